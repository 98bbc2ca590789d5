"""Sweeps against a real RabbitMQ server with real Celery worker processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest
from scratch_projects import make_project

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.driver.run import run_sweep
from mlframework.sweep.driver.spec import SweepObserver, SweepSpec
from mlframework.sweep.params.grid_file import load_grid
from mlframework.sweep.wire.app import BrokerSettings


@pytest.fixture
def broker(rabbitmq) -> BrokerSettings:
    return BrokerSettings(url=rabbitmq.url)


def test_cli_sweep_on_rabbitmq_with_two_workers(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [1, 7]\n")
    with (
        LocalWorker(broker, project, 1, tmp_path / "a.log", node_name="a@%h"),
        LocalWorker(broker, project, 1, tmp_path / "b.log", node_name="b@%h"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "mlframework", "sweep", str(project), "--results", "res", "--metric", "loss"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "MLFRAMEWORK_BROKER_URL": rabbitmq.url, "COLUMNS": "200"},
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert rabbitmq.url.split("@")[0].split(":")[-1] not in result.stdout, "the broker password is never printed"
    (sweep_dir,) = (tmp_path / "res").iterdir()
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["x"] for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert {row["status"] for row in rows} == {"SUCCESS"}
    assert "best: loss=" in result.stdout and "--x=6" in result.stdout.split("best: loss=")[1].splitlines()[0]
    queues = rabbitmq.ctl("list_queues", "-p", rabbitmq.vhost, "name", "messages").stdout
    assert f"mlframework.events.{sweep_dir.name}" not in queues, "a finished sweep removes its event queue"


class _KillOnStart(SweepObserver):
    """Kills the worker that takes trial t0000 as soon as it reports it started."""

    def __init__(self, workers: dict[str, LocalWorker]) -> None:
        self.workers = workers
        self.killed: str | None = None

    def trial_started(self, event: dict) -> None:
        if event["trial"] == "t0000" and self.killed is None:
            node = event["worker"].split("@")[0]
            time.sleep(0.5)  # well inside the 3 s trial
            self.workers[node].kill()
            self.killed = node


def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, broker):
    project = make_project(tmp_path / "proj", "n: [3]\nk: [1, 2]\n")
    workers = {
        name: LocalWorker(broker, project, 1, tmp_path / f"{name}.log", node_name=f"{name}@%h") for name in ("a", "b")
    }
    for worker in workers.values():
        worker.start()
    try:
        observer = _KillOnStart(workers)
        spec = SweepSpec(project, load_grid(project / "parameters.yml"), task="echo", results_root=tmp_path / "res")
        outcome = run_sweep(spec, broker, observer)
    finally:
        for worker in workers.values():
            worker.stop()
    assert observer.killed is not None
    assert outcome.exit_status == 0 and outcome.succeeded == 2
    lines = (outcome.directory / "trials.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["trial"] for r in records) == ["t0000", "t0001"], "exactly one record per trial"
    survivor = next(r for r in records if r["trial"] == "t0000")
    assert survivor["redelivered"] is True
    assert not survivor["worker"].startswith(observer.killed + "@")


def test_dispatch_to_an_unreachable_broker_is_a_clear_error(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1]\n")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--broker", "amqp://u:secret@127.0.0.1:9/v"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot reach the broker at amqp://u:**@127.0.0.1:9/v" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "results").exists(), "no sweep is recorded when nothing could be sent"


def _status(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", "status", "--broker", url, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_lists_each_live_worker_and_fails_when_none_answers(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: [1]\n")
    assert _status(rabbitmq.url).returncode == 1, "no worker: non-zero"
    with (
        LocalWorker(broker, project, 1, tmp_path / "a.log", node_name="a@%h"),
        LocalWorker(broker, project, 1, tmp_path / "b.log", node_name="b@%h"),
    ):
        deadline = time.monotonic() + 30
        while (result := _status(rabbitmq.url)).stdout.count("->") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = [line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith("->")]
    assert [node.split("@")[0] for node in nodes] == ["a", "b"] and "2 node(s) online." in result.stdout


def test_status_with_an_unreachable_broker_is_one_line(tmp_path):
    result = _status("amqp://u:secret@127.0.0.1:9/v")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip() == "mlframework: error: cannot reach the broker at amqp://u:**@127.0.0.1:9/v: "
        "[Errno 111] Connection refused"
    )
