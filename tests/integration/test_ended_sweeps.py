"""No trial of an ended sweep ever runs (mlframework/sweep/wire/liveness.py), on a real RabbitMQ with real workers.

Each test gets a vhost of its own, so no test meets another's leftover messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scratch_projects import make_project, start_sweep, wait_for_records

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire import liveness
from mlframework.sweep.wire.app import TRIAL_QUEUE, BrokerSettings, create_app

COUNTED = """
    @mlf.task
    def counted(trial):
        import os, time
        time.sleep(float(trial.params["sleep"]))
        with open(os.path.join(trial.project_dir, "runs.log"), "a") as handle:
            handle.write(f"{trial.sweep_id} {trial.id}\\n")
        return {"score": trial.params["x"]}
"""


def _sweep(cwd: Path, url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MLFRAMEWORK_BROKER_URL": url, "COLUMNS": "200"},
    )


def _queue_copy(url: str, sweep_id: str, trial: str, index: int, epoch: int = 0) -> None:
    """A copy of a trial message, as the driver sends it, left on the trial queue."""
    app = create_app(BrokerSettings(url))
    try:
        app.send_task(
            "counted",
            kwargs={
                "params": {"x": index, "sleep": 0},
                "trial": {"sweep": sweep_id, "id": trial, "index": index, "attempt": 1, "epoch": epoch},
            },
            task_id=f"{sweep_id}.{trial}.copy",
            queue=TRIAL_QUEUE,
        )
    finally:
        app.close()


def _runs(project: Path) -> list[str]:
    path = project / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def test_copies_of_an_ended_sweeps_trials_are_dropped_by_the_next_sweeps_workers(tmp_path, vhost_url):
    broker = BrokerSettings(vhost_url)
    first = make_project(tmp_path / "first", "x: [0, 1, 2]\nsleep: [0]\n", extra_tasks=COUNTED)
    with LocalWorker(broker, first, 1, tmp_path / "first.log", node_name="first@%h"):
        done = _sweep(tmp_path, vhost_url, str(first), "--task", "counted", "--results", "res")
    assert done.returncode == 0, done.stdout + done.stderr
    (ended,) = (tmp_path / "res").iterdir()
    # The ended sweep's trials still queued (as after a broker restart), and one of a sweep nobody knows.
    for index in (0, 2):
        _queue_copy(vhost_url, ended.name, f"t{index:04d}", index)
    _queue_copy(vhost_url, "20990101-000000-unknown-0000", "t0000", 0)

    second = make_project(tmp_path / "second", "x: [7]\nsleep: [0]\n", extra_tasks=COUNTED)
    with LocalWorker(broker, second, 1, tmp_path / "second.log", node_name="second@%h"):
        result = _sweep(tmp_path, vhost_url, str(second), "--task", "counted", "--results", "res2")
    assert result.returncode == 0, result.stdout + result.stderr
    (current,) = (tmp_path / "res2").iterdir()
    assert _runs(second) == [f"{current.name} t0000"], "the second sweep's workers ran an ended sweep's trial"
    log = (tmp_path / "second.log").read_text()
    assert log.count("the sweep is finished, cancelled or unknown") == 3, log[-3000:]
    assert f"dropped t0002 of sweep {ended.name} (epoch 0)" in log


def test_a_cancelled_sweep_resumes_and_its_old_copies_never_run_twice(tmp_path, vhost_url):
    broker = BrokerSettings(vhost_url)
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 8]\nsleep: [0.5]\n", extra_tasks=COUNTED)
    with LocalWorker(broker, project, 1, tmp_path / "w.log", node_name="w@%h"):
        driver = start_sweep(tmp_path, str(project), "--task", "counted", "--results", "res", broker_url=vhost_url)
        try:
            sweep_dir = wait_for_records(tmp_path / "res", 2)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=10)
        # What `mlframework cancel` does: end the sweep's epoch on the broker, record the status.
        meta_path = sweep_dir / "sweep.json"
        meta = json.loads(meta_path.read_text())
        app = create_app(broker)
        with app.connection_for_write() as connection:
            liveness.end_sweep(connection, sweep_dir.name, int(meta["epoch"]), "cancelled")
        app.close()
        meta["status"] = "cancelled"
        meta_path.write_text(json.dumps(meta))
        time.sleep(2)  # the queued copies of epoch 0 are dropped as the worker meets them
        result = _sweep(tmp_path, vhost_url, "--resume", sweep_dir.name, "--results", "res")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [line.split()[1] for line in _runs(project)]
    assert sorted(runs) == sorted(set(runs)), f"a trial ran twice: {sorted(runs)}"
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in records) == [f"t{i:04d}" for i in range(8)]
    meta = json.loads(meta_path.read_text())
    assert meta["status"] == "finished" and meta["epoch"] == 1
