"""Names shared across the package and the bench have one home each and are imported wherever used.

Environment variables: mlframework/envvars.py; a trial's statuses: mlframework/statuses.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mlframework import envvars

REPO = Path(__file__).resolve().parents[2]
NAME = re.compile(r"MLFRAMEWORK_[A-Z0-9_]+")

# Still spelled where they were first defined; each must equal envvars' name (below) until it imports it.
# mlframework/sweep/ and cli.py are being split on other branches: switch these to imports after those merges.
PENDING = {
    # The bench's own names, for its LCBench project: homes in bench/.
    "bench/lcbench.py": {"MLFRAMEWORK_YAHPO_DATA", "MLFRAMEWORK_LCBENCH_SCALE"},
    "bench/projects/lcbench/tasks.py": {"MLFRAMEWORK_LCBENCH_PYTHON"},
}


def _spelled_names(path: Path) -> set[str]:
    """Every string constant in ``path`` that is exactly an environment variable name (docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value)
    }


def test_no_module_spells_an_environment_variable_name_but_envvars():
    home = REPO / "mlframework" / "envvars.py"
    found = {}
    for path in sorted([*(REPO / "mlframework").rglob("*.py"), *(REPO / "bench").rglob("*.py")]):
        if path == home or ".venv" in path.parts:
            continue
        relative = path.relative_to(REPO).as_posix()
        extra = _spelled_names(path) - PENDING.get(relative, set())
        if extra:
            found[relative] = sorted(extra)
    assert found == {}, f"import these names from mlframework.envvars: {found}"


def test_the_names_still_defined_elsewhere_are_the_same_names():
    from mlframework import metrics
    from mlframework.cluster.embedded import watchdog
    from mlframework.report import live
    from mlframework.sweep.trials import gpu_usage, provenance, trial, trial_env
    from mlframework.sweep.wire import app, control
    from mlframework.system import proctree

    assert (app.ENV_BROKER_URL, app.ENV_TRANSPORT_OPTIONS, app.ENV_CELERY_CONFIG) == (
        envvars.BROKER_URL,
        envvars.TRANSPORT_OPTIONS,
        envvars.CELERY_CONFIG,
    )
    assert (trial.ENV_HOST, trial.ENV_GPU, trial.ENV_PROJECT) == (envvars.HOST, envvars.GPU, envvars.PROJECT)
    assert provenance.ENV_IMAGE == envvars.IMAGE and trial_env.ENV_SLOTS == envvars.SLOTS
    assert proctree.TREE_ENV == envvars.TREE and gpu_usage.ENV_INTERVAL == envvars.GPU_SAMPLE_SECONDS
    assert control.ENV_STOP_FILE == metrics.STOP_ENV_VAR == envvars.STOP_FILE
    assert metrics.ENV_VAR == envvars.METRICS_FILE
    assert watchdog.CLUSTER_ENV == envvars.CLUSTER and live.ENV_SWITCH == envvars.LIVE_REPORT
    values = [value for name, value in vars(envvars).items() if name.isupper()]
    assert len(values) == len(set(values)) and all(NAME.fullmatch(v) for v in values)


def test_the_statuses_defined_in_sweep_are_the_shared_ones():
    from mlframework import statuses
    from mlframework.sweep.records import catalog
    from mlframework.sweep.search import study as search
    from mlframework.sweep.trials import tasks
    from mlframework.sweep.wire import outcome

    assert (tasks.SUCCESS, tasks.FAILURE, outcome.SUCCESS) == (statuses.SUCCESS, statuses.FAILURE, statuses.SUCCESS)
    assert (catalog.SUCCESS, catalog.FAILURE, catalog.PRUNED) == statuses.ALL
    assert search.PRUNED == statuses.PRUNED
