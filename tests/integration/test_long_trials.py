"""Trials longer than the broker's consumer_timeout: leased, run once, and never lost.

A broker of its own whose ``consumer_timeout`` is 3 s, checked every second
(RabbitMQ's channels check once a minute by default, so an unacknowledged
delivery is cut between ``consumer_timeout`` and ``consumer_timeout`` + 60 s;
``channel_tick_interval`` shortens that for the test). Workers lease a trial
after 1 s (``mlframework_lease_seconds``), the driver runs as the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scratch_projects import make_project, start_sweep

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire.app import LEASE_SETTING, BrokerSettings
from testbed.rabbitmq import RabbitMQNode

CONSUMER_TIMEOUT_MS = 3000
LEASE_S = 1.0

# Writes "<trial> <worker pid>" when it starts, so a trial run twice shows twice; sleeps `sleep` seconds.
# With `die: true` its first run kills its own pool process after the lease, as the OOM killer would.
TIMED = """
    @mlf.task
    def timed(trial):
        import os, pathlib, signal, time
        with open(os.path.join(trial.project_dir, "runs.log"), "a") as handle:
            handle.write(f"{trial.id} {os.getppid()}\\n")
        marker = pathlib.Path(trial.project_dir) / f"died-{trial.id}"
        if trial.params.get("die") and not marker.exists():
            marker.write_text("x")
            time.sleep(3 * float(os.environ.get("LEASE_S", "1")))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(trial.params["sleep"]))
        return {"slept": trial.params["sleep"]}
"""


@pytest.fixture(scope="module")
def strict_rabbitmq() -> Iterator[RabbitMQNode]:
    """A broker that cuts a delivery left unacknowledged for 3 s, within about a second."""
    node = RabbitMQNode(
        config={"consumer_timeout": str(CONSUMER_TIMEOUT_MS)},
        advanced={"rabbit": {"channel_tick_interval": "1000"}},
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def broker(strict_rabbitmq: RabbitMQNode) -> BrokerSettings:
    return BrokerSettings(url=strict_rabbitmq.url, celery_config={LEASE_SETTING: LEASE_S})


def worker(broker: BrokerSettings, project: Path, name: str, log: Path) -> LocalWorker:
    return LocalWorker(broker, project, 1, log, node_name=f"{name}@%h", extra_env={"LEASE_S": str(LEASE_S)})


def wait_for_workers(broker: BrokerSettings, names: set[str], timeout: float = 60) -> None:
    """Until a worker of each node name (``a`` for ``a@host``) answers a ping."""
    from mlframework.cluster.recorded import worker_status

    deadline = time.monotonic() + timeout
    while {node.split("@")[0] for node in worker_status(broker, timeout=1.0)} < names:
        assert time.monotonic() < deadline, f"workers {sorted(names)} did not come up"


def records_of(results: Path) -> list[dict]:
    (sweep_dir,) = results.iterdir()
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def runs_of(project: Path) -> list[tuple[str, int]]:
    """(trial, worker pid) of each start of a trial."""
    path = project / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(trial, int(pid)) for trial, pid in (line.split() for line in lines)]


def sweep(cwd: Path, url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MLFRAMEWORK_BROKER_URL": url, "COLUMNS": "200"},
    )


def assert_no_channel_cut(*logs: Path) -> None:
    for log in logs:
        text = log.read_text()
        assert "PRECONDITION_FAILED" not in text and "acknowledgement" not in text, f"{log}:\n{text[-3000:]}"


def test_a_trial_longer_than_the_consumer_timeout_runs_once_and_nothing_waits_behind_it(
    tmp_path, broker, strict_rabbitmq
):
    project = make_project(tmp_path / "proj", "sleep: [10, 1, 1, 1, 1]\n", extra_tasks=TIMED)
    started = time.monotonic()
    with worker(broker, project, "a", tmp_path / "a.log"), worker(broker, project, "b", tmp_path / "b.log"):
        wait_for_workers(broker, {"a", "b"})
        result = sweep(tmp_path, strict_rabbitmq.url, str(project), "--task", "timed", "--results", "res")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    records = {r["trial"]: r for r in records_of(tmp_path / "res")}
    assert sorted(records) == [f"t{i:04d}" for i in range(5)]
    assert all(r["status"] == "SUCCESS" for r in records.values())
    runs = runs_of(project)
    assert sorted(trial for trial, _ in runs) == sorted(records), f"a trial started twice: {runs}"
    long_worker = records["t0000"]["worker"]
    assert "acknowledged early" in (tmp_path / f"{long_worker.split('@')[0]}.log").read_text()
    # The acknowledgement freed a prefetch slot that the worker gave up: no short trial waited behind the long one.
    assert all(records[t]["worker"] != long_worker for t in ("t0001", "t0002", "t0003", "t0004")), records
    assert_no_channel_cut(tmp_path / "a.log", tmp_path / "b.log")
    print(f"sweep with a 10 s trial on a broker with a 3 s consumer_timeout: {took:.1f}s including worker start")


def test_a_leased_trial_whose_worker_is_killed_runs_again_on_another_worker(tmp_path, broker, strict_rabbitmq):
    project = make_project(tmp_path / "proj", "sleep: [8]\n", extra_tasks=TIMED)
    with worker(broker, project, "a", tmp_path / "a.log") as a, worker(broker, project, "b", tmp_path / "b.log") as b:
        wait_for_workers(broker, {"a", "b"})
        driver = start_sweep(
            tmp_path, str(project), "--task", "timed", "--results", "res", broker_url=strict_rabbitmq.url
        )
        try:
            deadline = time.monotonic() + 30
            while not any("acknowledged early" in log.read_text() for log in (tmp_path / "a.log", tmp_path / "b.log")):
                assert time.monotonic() < deadline, "the trial was never leased"
                time.sleep(0.2)
            time.sleep(0.5)  # the acknowledgement leaves at the worker's next event-loop turn, after its log line
            ((_, pid),) = runs_of(project)
            (victim, victim_name), (survivor, survivor_name) = sorted(
                [(a, "a"), (b, "b")], key=lambda worker_name: worker_name[0].pid != pid
            )
            assert victim.pid == pid
            survivor_pid = survivor.pid
            killed_at = time.monotonic()
            victim.kill()  # the whole worker at once, as a power cut would: the broker will not give the trial back
            output, _ = driver.communicate(timeout=90)
        finally:
            if driver.poll() is None:
                driver.kill()
    redone_after = time.monotonic() - killed_at
    assert driver.returncode == 0, output
    (record,) = records_of(tmp_path / "res")
    assert record["status"] == "SUCCESS" and record["worker"].startswith(f"{survivor_name}@"), record
    assert [p for _, p in runs_of(project)] == [pid, survivor_pid], "run again once, by the other worker"
    assert f"acknowledged early by {victim_name}@" in output and "running nowhere" in output, output
    print(f"the killed worker's leased trial was recorded {redone_after:.1f}s after the kill (an 8 s trial)")


def test_a_leased_trial_whose_pool_process_dies_runs_again(tmp_path, broker, strict_rabbitmq):
    project = make_project(tmp_path / "proj", "sleep: [0.5]\ndie: [true]\n", extra_tasks=TIMED)
    with worker(broker, project, "w", tmp_path / "w.log") as w:
        wait_for_workers(broker, {"w"})
        worker_pid = w.pid
        result = sweep(tmp_path, strict_rabbitmq.url, str(project), "--task", "timed", "--results", "res")
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = records_of(tmp_path / "res")
    assert record["status"] == "SUCCESS"
    # The worker outlived its pool process and, its only process free again, took the trial back.
    assert [p for _, p in runs_of(project)] == [worker_pid, worker_pid]
    assert "acknowledged early" in (tmp_path / "w.log").read_text()
    assert "running nowhere" in result.stdout + result.stderr
    assert_no_channel_cut(tmp_path / "w.log")
