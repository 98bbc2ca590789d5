"""A project with no tasks.py: its command and argument style given in parameters.yml, swept end to end.

Real embedded workers run the built-in command task on a script written here; the sweep is then
resumed and one trial reproduced, each rebuilding the same command from what sweep.json records.
On a real RabbitMQ, workers started as the cluster's containers start them (``celery -A
mlframework.sweep.trials.worker``, the project named by MLFRAMEWORK_PROJECT) serve such a project too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire.app import BrokerSettings

pytestmark = pytest.mark.integration

# A Hydra-like app: key=value overrides a key of its config, +key=value adds one; then --out_dir=DIR.
SCRIPT = """
import json, os, sys
config = {"a": {"b": 0}, "lr": 1.0, "compile": True}
out_dir = None
for arg in sys.argv[1:]:
    if arg.startswith("--out_dir="):
        out_dir = arg.split("=", 1)[1]
        continue
    if arg.startswith("--"):  # the booleans style: --name=value
        key, value = arg[2:].split("=", 1)
        config[key] = {"True": True, "False": False}.get(value, value)
        continue
    new = arg.startswith("+")
    key, value = arg.lstrip("+").split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    if new == (leaf in node):
        sys.exit(f"Could not {'add' if new else 'override'} {key!r}")
    node[leaf] = value
print("received " + " ".join(sys.argv[1:]), flush=True)
print("cwd " + os.getcwd(), flush=True)
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "ckpt.pt"), "w") as handle:
    json.dump(config, handle, sort_keys=True)
lr = float(config["lr"])
for step in range(3):
    print(f"step {step}: val loss {lr * (3 - step):.4f}", flush=True)
"""

HYDRA_PARAMETERS = """\
mlframework:
  command: python train.py {args} --out_dir={trial_dir}/out
  arguments: hydra
  new_keys: [c]
lr: [0.1, 0.2]
a.b: [1]
c: [x]
"""

BOOLEANS_PARAMETERS = """\
mlframework:
  command: ["{python}", "{project_dir}/train.py", "{args}", "--out_dir=out"]
  arguments: booleans
  cwd: trial
lr: [0.5]
compile: [false, true]
"""


def _project(tmp_path: Path, parameters: str) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    (project / "parameters.yml").write_text(parameters)
    assert not (project / "tasks.py").exists()
    return project


def _mlframework(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _records(sweep_dir: Path) -> dict[str, dict]:
    return {r["trial"]: r for r in map(json.loads, (sweep_dir / "trials.jsonl").read_text().splitlines())}


def test_a_hydra_app_with_no_tasks_py_gets_its_arguments_and_an_output_dir_per_trial(tmp_path):
    project = _project(tmp_path, HYDRA_PARAMETERS)
    results = tmp_path / "res"
    result = _mlframework(tmp_path, "sweep", str(project), "--local", "--workers", "2", "--results", str(results))
    (sweep_dir,) = results.iterdir()
    records = _records(sweep_dir)
    assert sorted(records) == ["t0000", "t0001"] and {r["status"] for r in records.values()} == {"SUCCESS"}
    for trial, lr in (("t0000", 0.1), ("t0001", 0.2)):
        out = sweep_dir / "work" / trial / "out"
        log = (sweep_dir / "logs" / f"{trial}.log").read_text()
        assert f"received lr={lr} a.b=1 +c=x --out_dir={out.resolve()}" in log, log
        assert f"cwd {project.resolve()}" in log, "run in the project directory (cwd: project)"
        assert json.loads((out / "ckpt.pt").read_text()) == {"a": {"b": "1"}, "c": "x", "compile": True, "lr": str(lr)}
        record = records[trial]
        assert record["command"] == f"{sys.executable} train.py lr={lr} a.b=1 +c=x --out_dir={out.resolve()}"
        assert record["metrics"] == {"val loss": pytest.approx(lr)}
        assert [point["step"] for point in record["history"]] == [0, 1, 2]
    assert not (project / "out").exists()
    assert "ranked by val loss (min)" in result.stdout
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["command"] == {
        "command": ["python", "train.py", "{args}", "--out_dir={trial_dir}/out"],
        "arguments": "hydra",
        "cwd": "project",
        "new_keys": ["c"],
    }

    # --resume runs the trials not recorded with the command sweep.json recorded.
    first, second = (sweep_dir / "trials.jsonl").read_text().splitlines()
    (sweep_dir / "trials.jsonl").write_text(first + "\n")
    lost = json.loads(second)
    meta["status"] = "interrupted"
    (sweep_dir / "sweep.json").write_text(json.dumps(meta))
    _mlframework(tmp_path, "sweep", "--resume", sweep_dir.name, "--local", "--results", str(results))
    again = _records(sweep_dir)[lost["trial"]]
    assert again["status"] == "SUCCESS" and again["command"] == lost["command"]

    # reproduce runs one trial again as a new sweep, with the same command.
    _mlframework(tmp_path, "reproduce", sweep_dir.name, "t0001", "--local", "--results", str(results), "-q")
    (new_dir,) = [p for p in results.iterdir() if p.is_dir() and p != sweep_dir]
    (record,) = _records(new_dir).values()
    out = (new_dir / "work" / "t0000" / "out").resolve()
    assert (
        record["status"] == "SUCCESS"
        and record["command"] == f"{sys.executable} train.py lr=0.2 a.b=1 +c=x --out_dir={out}"
    )


def test_booleans_reach_the_script_as_values_in_the_trial_s_own_directory(tmp_path):
    project = _project(tmp_path, BOOLEANS_PARAMETERS)
    results = tmp_path / "res"
    dry = _mlframework(tmp_path, "sweep", str(project), "--dry-run", "--results", str(results))
    # {python}, {project_dir} and {trial_dir} are known when the trial runs: shown as written.
    assert "t0000 {python} {project_dir}/train.py --lr=0.5 --compile=False --out_dir=out" in dry.stdout
    result = _mlframework(tmp_path, "sweep", str(project), "--local", "--workers", "2", "--results", str(results))
    assert "warning" not in result.stdout + result.stderr
    (sweep_dir,) = results.iterdir()
    records = _records(sweep_dir)
    for trial, compile_ in (("t0000", False), ("t0001", True)):
        work = (sweep_dir / "work" / trial).resolve()
        assert records[trial]["status"] == "SUCCESS", records[trial].get("stderr_tail")
        assert records[trial]["command"].endswith(f"train.py --lr=0.5 --compile={compile_} --out_dir=out")
        assert f"cwd {work}" in (sweep_dir / "logs" / f"{trial}.log").read_text(), "cwd: trial"
        assert json.loads((work / "out" / "ckpt.pt").read_text())["compile"] is compile_


def test_workers_on_rabbitmq_serve_a_project_with_no_tasks_py(tmp_path, rabbitmq):
    project = _project(tmp_path, HYDRA_PARAMETERS)
    with LocalWorker(BrokerSettings(url=rabbitmq.url), project, 2, tmp_path / "worker.log", node_name="w@%h"):
        result = subprocess.run(
            [sys.executable, "-m", "mlframework", "sweep", str(project), "--results", "res", "--metric", "val loss"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "MLFRAMEWORK_BROKER_URL": rabbitmq.url, "COLUMNS": "200"},
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = _records(sweep_dir)
    assert {r["status"] for r in records.values()} == {"SUCCESS"} and len(records) == 2
    for trial, lr in (("t0000", 0.1), ("t0001", 0.2)):
        out = (sweep_dir / "work" / trial / "out").resolve()
        assert records[trial]["command"] == f"{sys.executable} train.py lr={lr} a.b=1 +c=x --out_dir={out}"
        assert (out / "ckpt.pt").is_file()
    assert "best: val loss=0.1 in t0000" in result.stdout
