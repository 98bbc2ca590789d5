"""`mlframework cancel`: queued trials never run, running ones stop, the driver ends, records stay, resume works.

Real RabbitMQ and Celery workers (a vhost per test), and real embedded mode with the driver in another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scratch_projects import make_project, start_sweep, wait_for_records

# Appends "start X <time>" when it starts and "end X" when it ends, to runs.log beside it.
SLOW = """
import argparse, os, sys, time
from mlframework import metrics
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int, required=True)
parser.add_argument("--sleep", type=float, required=True)
args = parser.parse_args()
log = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs.log")
with open(log, "a") as handle:
    handle.write(f"start {args.x} {time.time()}\\n")
time.sleep(args.sleep)
metrics.log(score=args.x)
with open(log, "a") as handle:
    handle.write(f"end {args.x}\\n")
"""


def slow_project(root: Path, trials: int, sleep: float) -> Path:
    project = make_project(root, f"x: !!python/tuple [0, {trials}]\nsleep: {sleep}\n")
    (project / "slow.py").write_text(SLOW)
    (project / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('slow.py')\n")
    return project


def mlframework(cwd: Path, *args: str, url: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    if url:
        env["MLFRAMEWORK_BROKER_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def starts(project: Path) -> list[tuple[int, float]]:
    lines = (project / "runs.log").read_text().splitlines() if (project / "runs.log").exists() else []
    return [(int(x), float(t)) for kind, x, *rest in (line.split() for line in lines) if kind == "start" for t in rest]


def records(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines() if line.strip()]


def test_cancel_on_rabbitmq_drops_queued_trials_stops_running_ones_and_resumes(tmp_path, vhost_url):
    from mlframework.cluster.embedded.workers import LocalWorker
    from mlframework.sweep.wire.app import BrokerSettings

    project = slow_project(tmp_path / "proj", trials=10, sleep=2.0)
    with LocalWorker(BrokerSettings(vhost_url), project, 2, tmp_path / "worker.log", node_name="w@%h"):
        driver = start_sweep(tmp_path, str(project), "--results", "res", "--max-batch", "1", broker_url=vhost_url)
        try:
            sweep_dir = wait_for_records(tmp_path / "res", 2, timeout=120)
            cancel = mlframework(tmp_path, "cancel", sweep_dir.name, "--results", "res", url=vhost_url)
            cancelled_at = time.time()
            assert cancel.returncode == 0, cancel.stdout + cancel.stderr
            assert f"cancelled sweep {sweep_dir.name}" in cancel.stdout
            assert f"--resume {sweep_dir.name}" in cancel.stdout
            output, _ = driver.communicate(timeout=30)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode != 0, output
        assert f"sweep {sweep_dir.name} cancelled in" in output, output
        meta = json.loads((sweep_dir / "sweep.json").read_text())
        assert meta["status"] == "cancelled", meta
        kept = records(sweep_dir)
        assert 2 <= len(kept) < 10 and all(r["status"] == "SUCCESS" for r in kept), kept
        time.sleep(4)  # anything still queued would have started by now
        assert [x for x, t in starts(project) if t > cancelled_at] == [], "no trial starts after the cancel"
        assert len(records(sweep_dir)) == len(kept), "records stay as they were"
        ls = mlframework(tmp_path, "ls", "--results", "res", "--json")
        assert json.loads(ls.stdout)[0]["status"] == "cancelled", ls.stdout

        resumed = mlframework(
            tmp_path, "sweep", "--resume", sweep_dir.name, "--results", "res", url=vhost_url, timeout=240
        )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = records(sweep_dir)
    assert sorted(r["trial"] for r in final) == [f"t{i:04d}" for i in range(10)], "every trial recorded once"
    assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "finished"


def test_cancel_of_an_embedded_sweep_running_in_another_terminal(tmp_path):
    project = slow_project(tmp_path / "proj", trials=8, sleep=2.0)
    driver = start_sweep(tmp_path, str(project), "--local", "--workers", "2", "--results", "res")
    try:
        sweep_dir = wait_for_records(tmp_path / "res", 2, timeout=120)
        began = time.monotonic()
        cancel = mlframework(tmp_path, "cancel", sweep_dir.name, "--results", "res")
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert "stopped" in cancel.stdout, cancel.stdout
        hint = cancel.stdout.splitlines()[-1]
        assert hint.startswith("resume it: mlframework sweep --resume") and "--local" in hint, "it resumes as it ran"
        output, _ = driver.communicate(timeout=30)
        assert time.monotonic() - began < 25
        assert f"sweep {sweep_dir.name} cancelled in" in output, "the driver's last words say what ls says"
    finally:
        if driver.poll() is None:
            driver.kill()
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["status"] == "cancelled"
    kept = len(records(sweep_dir))
    assert 2 <= kept < 8
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert str(project / "slow.py") not in ps and "slow.py" not in ps, "no trial process is left"
    again = mlframework(tmp_path, "cancel", sweep_dir.name, "--results", "res")
    assert again.returncode == 2 and "cancelled: nothing to cancel" in again.stderr, again.stderr

    prefix = sweep_dir.name[:-3]  # an id's unique prefix will do, as for show and report
    resumed = mlframework(tmp_path, "sweep", "--resume", prefix, "--results", "res", "--local", timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(r["trial"] for r in records(sweep_dir)) == [f"t{i:04d}" for i in range(8)]
