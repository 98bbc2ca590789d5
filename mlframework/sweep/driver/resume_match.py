"""``--resume`` as people type it: the original sweep command with ``--resume SWEEP_ID`` added.

``mlframework sweep PROJECT -p FILE [options] --resume SWEEP_ID`` is accepted
when what it names matches the sweep's record (``sweep.json``): the project
directory, the grid (the parameters file's content, by digest), the task and
the options that shape the sweep. The first difference is refused in one line
naming it, so that a resumed sweep never mixes two grids or two projects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlframework.exceptions import SweepError
from mlframework.sweep.params.grid_file import load_grid

# Options compared with the record: (sweep.json key, option as typed).
_OPTIONS = (
    ("task", "--task"),
    ("retries", "--retries"),
    ("max_starts", "--max-starts"),
    ("max_batch", "--max-batch"),
    ("requested_metric", "--metric"),
    ("requested_mode", "--mode"),
    ("objectives", "--metric"),
    ("constraints", "--constraint"),
)


def check_matches(
    results_root: Path, sweep_id: str, project_dir: Path, parameters_file: Path | None, options: dict[str, Any]
) -> None:
    """Raise SweepError naming the first thing the command gives that differs from the sweep's record.

    ``options`` maps the sweep.json keys of :data:`_OPTIONS` to the values given.
    """
    from mlframework.sweep.driver.run import _grid_digest  # the digest the record was made with

    meta_path = results_root / sweep_id / "sweep.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{meta_path.parent}: no sweep {sweep_id!r} here (check --results)") from None
    except ValueError as exc:
        raise SweepError(f"{meta_path}: not a sweep record ({exc})") from None
    recorded_project = Path(str(meta.get("project", ""))).resolve()
    if project_dir.resolve() != recorded_project:
        raise SweepError(
            f"--resume {sweep_id}: PROJECT_DIR {project_dir} is not the sweep's project {recorded_project}"
        )
    grid_file = parameters_file or project_dir / "parameters.yml"
    grid = load_grid(grid_file)
    recorded_digest = meta.get("parameters_sha256")
    if recorded_digest and _grid_digest(grid) != recorded_digest:
        raise SweepError(
            f"--resume {sweep_id}: the grid of {grid_file} differs from the one the sweep started with "
            f"({meta.get('parameters_file')}); start a new sweep instead"
        )
    for key, option in _OPTIONS:
        given, recorded = options.get(key), meta.get(key)
        if key in ("retries",):
            recorded = int(recorded or 0)
        if given != recorded:
            raise SweepError(f"--resume {sweep_id}: {option} {given} differs from the sweep's {recorded}")
