"""Scripts not written for mlframework, driven as they are: command templates and argument styles, end to end.

Each sweep runs in embedded mode (real Celery workers) on a script written here in the manner of a
well-known kind: a ``--key=value`` configurator that reads its config relative to the project directory
and writes ``out_dir/ckpt.pt``; a Hydra app (overrides parsed by hand, no Hydra needed); an argparse
script whose ``--compile`` defaults to true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Like a configurator script: a config file (read from the working directory) then --key=value overrides,
# each read with literal_eval (a string when that fails), each key one the config already has.
CONFIGURATOR_SCRIPT = """
import ast, os, sys
out_dir, compile, lr = "out", True, 1.0
exec(open(os.path.join("config", sys.argv[1])).read())
for arg in sys.argv[2:]:
    key, value = arg[2:].split("=", 1)
    assert key in globals(), f"unknown config key {key}"
    try:
        value = ast.literal_eval(value)
    except (SyntaxError, ValueError):
        pass
    assert type(value) is type(globals()[key]), f"{key}: {value!r} is not a {type(globals()[key]).__name__}"
    globals()[key] = value
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "ckpt.pt"), "w") as handle:
    handle.write(f"lr={lr} compile={compile} cwd={os.getcwd()}")
print(f"val loss {lr}", flush=True)
"""

# Like a Hydra app: key=value overrides a key of the config, +key=value adds one it does not have.
HYDRA_APP = """
import json, sys
config = {"a": {"b": 0}, "tag": ""}
for override in sys.argv[1:]:
    new = override.startswith("+")
    key, value = override.lstrip("+").split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    if new == (leaf in node):
        sys.exit(f"Could not {'add' if new else 'override'} {key!r}")
    node[leaf] = value
print("received " + " ".join(sys.argv[1:]), flush=True)
print("config " + json.dumps(config, sort_keys=True), flush=True)
"""

ARGPARSE_SCRIPT = """
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--compile", action="store_true", default=True)
parser.add_argument("--lr", type=float)
parser.add_argument("--tag")
args = parser.parse_args()
print(f"compile={args.compile} tag={args.tag}", flush=True)
"""

TASKS = """
import mlframework as mlf

ckpt = mlf.command_task(
    "{python} train.py cfg.py {args} --out_dir={trial_dir}/out", name="ckpt", arguments="booleans"
)
hydra_app = mlf.command_task("{python} app.py {args}", name="hydra_app", arguments=mlf.ArgumentStyle.hydra(new=["c"]))
plain = mlf.train_task("plain.py", name="plain", args=["--tag={trial}"])
"""


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "config").mkdir()
    (root / "config" / "cfg.py").write_text("lr = 0.5\n")
    (root / "train.py").write_text(CONFIGURATOR_SCRIPT)
    (root / "app.py").write_text(HYDRA_APP)
    (root / "plain.py").write_text(ARGPARSE_SCRIPT)
    (root / "tasks.py").write_text(textwrap.dedent(TASKS))
    return root


def _sweep(tmp_path: Path, project: Path, task: str, grid: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    parameters = tmp_path / f"{task}.yml"
    parameters.write_text(grid)
    results = tmp_path / f"res-{task}"
    options = ["-p", str(parameters), "--task", task, "--local", "--workers", "2", "--results", str(results)]
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return result, sweep_dir


def _records(sweep_dir: Path) -> dict[str, dict]:
    return {r["trial"]: r for r in map(json.loads, (sweep_dir / "trials.jsonl").read_text().splitlines())}


def test_two_trials_of_a_project_cwd_script_keep_two_checkpoints_and_get_false_as_a_value(tmp_path):
    project = _project(tmp_path / "proj")
    result, sweep_dir = _sweep(tmp_path, project, "ckpt", "lr: [0.1, 0.2]\ncompile: [false]\n")
    records = _records(sweep_dir)
    assert {r["status"] for r in records.values()} == {"SUCCESS"}
    checkpoints = {t: (sweep_dir / "work" / t / "out" / "ckpt.pt").read_text() for t in ("t0000", "t0001")}
    assert checkpoints["t0000"].startswith("lr=0.1 compile=False") and checkpoints["t0001"].startswith("lr=0.2")
    assert all(text.endswith(f"cwd={project}") for text in checkpoints.values()), "run in the project directory"
    assert not (project / "out").exists(), "nothing written to the shared out/"
    command = records["t0000"]["command"]
    assert "cfg.py --lr=0.1 --compile=False --out_dir=" in command and command.endswith("/work/t0000/out")
    assert "warning" not in result.stdout + result.stderr


def test_a_hydra_app_receives_overrides_and_new_keys(tmp_path):
    project = _project(tmp_path / "proj")
    _result, sweep_dir = _sweep(tmp_path, project, "hydra_app", "a.b: [1]\nc: [x]\ntag: ['{trial} run']\n")
    record = _records(sweep_dir)["t0000"]
    assert record["status"] == "SUCCESS", record.get("stderr_tail")
    log = (sweep_dir / "logs" / "t0000.log").read_text()
    assert "received a.b=1 +c=x tag='t0000 run'" in log
    assert 'config {"a": {"b": "1"}, "c": "x", "tag": "\'t0000 run\'"}' in log


def test_a_dropped_false_is_said_once_at_the_sweep_s_start(tmp_path):
    project = _project(tmp_path / "proj")
    result, sweep_dir = _sweep(tmp_path, project, "plain", "lr: [0.1, 0.2]\ncompile: [false]\n")
    output = result.stdout + result.stderr
    assert output.count("false leaves --compile out") == 1, output
    assert 'arguments="booleans" (--compile=False)' in output
    assert "compile=True tag=t0000" in (sweep_dir / "logs" / "t0000.log").read_text(), "the script kept its default"
