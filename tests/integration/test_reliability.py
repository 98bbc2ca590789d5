"""No trial lost, none run twice: retries, trials that kill their worker, a driver killed and resumed.

Real RabbitMQ (testbed/rabbitmq.py) and real Celery worker processes; the
driver runs as the CLI a user would run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scratch_projects import CRASH_IN_BATCH, make_project, start_sweep, wait_for_records

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire.app import BrokerSettings

# Fails its first attempt (per value of x), succeeds after: a flaky trial.
FLAKY = """
    @mlf.task
    def flaky(trial):
        import pathlib
        marker = pathlib.Path(trial.project_dir) / f"tried-{trial.params['x']}"
        first = not marker.exists()
        marker.write_text("x")
        trial.print("attempt", trial.attempt, "on", trial.host)
        if first or trial.params["x"] < 0:
            raise mlf.TrialFailed(f"flaky failure of x={trial.params['x']}", exit_code=1)
        return {"score": trial.params["x"]}
"""

# Kills its own pool process, as the OOM killer would.
SUICIDE = """
    @mlf.task
    def oom(trial):
        import os, signal, time
        if trial.params["x"] == 2:
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)
        return {"score": 1}
"""

# Each run appends to runs.log, so a trial run twice shows twice.
COUNTED = """
    @mlf.task
    def counted(trial):
        import os, time
        time.sleep(float(trial.params["sleep"]))
        with open(os.path.join(trial.project_dir, "runs.log"), "a") as handle:
            handle.write(f"{trial.id}\\n")
        return {"score": trial.params["x"]}
"""


# Trials from x=2 on wait (at most 2 minutes) for the test to open the gate: they are still to run, or
# running, whenever the test restarts the broker, however slowly a loaded machine restarts it.
GATED = """
    @mlf.task
    def gated(trial):
        import os, time
        gate = os.path.join(trial.project_dir, "gate")
        deadline = time.monotonic() + 120
        while trial.params["x"] >= 2 and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(float(trial.params["sleep"]))
        return {"score": trial.params["x"]}
"""


@pytest.fixture
def broker(rabbitmq) -> BrokerSettings:
    return BrokerSettings(url=rabbitmq.url)


def sweep(cwd: Path, url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MLFRAMEWORK_BROKER_URL": url, "COLUMNS": "200"},
    )


def wait_for_workers(broker: BrokerSettings, names: set[str], timeout: float = 60) -> None:
    """Until a worker of each node name (``a`` for ``a@host``) answers a ping."""
    from mlframework.cluster.recorded import worker_status

    deadline = time.monotonic() + timeout
    while {node.split("@")[0] for node in worker_status(broker, timeout=1.0)} < names:
        assert time.monotonic() < deadline, f"workers {sorted(names)} did not come up"


def records_of(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def test_retries_rerun_a_failed_trial_on_another_worker_and_keep_every_attempt(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: [1]\n", extra_tasks=FLAKY)
    with (
        LocalWorker(broker, project, 1, tmp_path / "a.log", node_name="a@%h"),
        LocalWorker(broker, project, 1, tmp_path / "b.log", node_name="b@%h"),
    ):
        # Both workers up and idle: the retry goes to the one that did not fail it.
        wait_for_workers(broker, {"a", "b"})
        once = sweep(tmp_path, rabbitmq.url, str(project), "--task", "flaky", "--retries", "2", "--results", "one")
        project.joinpath("parameters.yml").write_text("x: [-1, 2, 3]\n")
        hopeless = sweep(tmp_path, rabbitmq.url, str(project), "--task", "flaky", "--retries", "2", "--results", "two")
    assert once.returncode == 0, once.stdout + once.stderr
    ((record,),) = [records_of(d) for d in (tmp_path / "one").iterdir()]
    assert record["status"] == "SUCCESS" and record["attempt"] == 2
    (failed,) = record["attempts"]
    assert failed["status"] == "FAILURE" and failed["attempt"] == 1 and "flaky failure" in failed["error"]
    assert failed["worker"] != record["worker"], "the retry ran on the other worker"
    assert "retry 1 of 2 sent" in once.stdout
    (sweep_dir,) = (tmp_path / "one").iterdir()
    log = (sweep_dir / "logs" / "t0000.log").read_text()
    assert "attempt 1 on" in log and "attempt 2 on" in log, "the log keeps every attempt's output"

    assert hopeless.returncode == 1, hopeless.stdout + hopeless.stderr
    (sweep_dir,) = (tmp_path / "two").iterdir()
    records = {r["params"]["x"]: r for r in records_of(sweep_dir)}
    assert sorted(records) == [-1, 2, 3], "one record per trial, whatever the attempts"
    assert records[-1]["status"] == "FAILURE" and records[-1]["attempt"] == 3
    assert [a["attempt"] for a in records[-1]["attempts"]] == [1, 2]
    assert all(records[x]["status"] == "SUCCESS" and records[x]["attempt"] == 2 for x in (2, 3))


def test_a_trial_that_keeps_killing_its_process_fails_after_max_starts(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: [1, 2, 3]\n", extra_tasks=SUICIDE)
    started = time.monotonic()
    with LocalWorker(broker, project, 2, tmp_path / "w.log", node_name="w@%h"):
        result = sweep(
            tmp_path, rabbitmq.url, str(project), "--task", "oom", "--max-starts", "3", "--results", "res", timeout=240
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 180, "no endless redelivery loop"
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = {r["params"]["x"]: r for r in records_of(sweep_dir)}
    assert sorted(records) == [1, 2, 3]
    assert records[1]["status"] == records[3]["status"] == "SUCCESS"
    assert records[2]["status"] == "FAILURE" and "worker died 3 times" in records[2]["error"]


def test_a_batch_of_short_trials_whose_worker_dies_loses_none_and_records_each_once(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 400]\ncrash: [250]\n", extra_tasks=CRASH_IN_BATCH)
    with LocalWorker(broker, project, 2, tmp_path / "w.log", node_name="w@%h"):
        result = sweep(
            tmp_path,
            rabbitmq.url,
            str(project),
            "--task",
            "crash_at",
            "--max-starts",
            "2",
            "--results",
            "res",
            timeout=240,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = records_of(sweep_dir)
    assert sorted(r["params"]["x"] for r in records) == list(range(400)), "one record per trial, none lost"
    by_x = {r["params"]["x"]: r for r in records}
    assert by_x[250]["status"] == "FAILURE" and "worker died 2 times" in by_x[250]["error"]
    assert all(r["status"] == "SUCCESS" for x, r in by_x.items() if x != 250)
    messages = {r["message"] for r in records}
    assert len(messages) < 100, f"short trials were not batched: {len(messages)} messages for 400 trials"
    assert "." in by_x[250]["message"] and "+" not in by_x[250]["message"], "the killer ran on its own at the end"


def test_a_killed_driver_resumes_without_losing_or_rerunning_a_trial(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 12]\nsleep: [0.5]\n", extra_tasks=COUNTED)
    with LocalWorker(broker, project, 2, tmp_path / "w.log", node_name="w@%h"):
        driver = start_sweep(tmp_path, str(project), "--task", "counted", "--results", "res", broker_url=rabbitmq.url)
        try:
            sweep_dir = wait_for_records(tmp_path / "res", 3)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=10)
        recorded_at_kill = len(records_of(sweep_dir))
        time.sleep(3)  # the workers go on: their results wait in the sweep's queue
        result = sweep(tmp_path, rabbitmq.url, "--resume", sweep_dir.name, "--results", "res")
    assert result.returncode == 0, result.stdout + result.stderr
    records = records_of(sweep_dir)
    assert sorted(r["trial"] for r in records) == [f"t{i:04d}" for i in range(12)], "one record per trial"
    runs = (project / "runs.log").read_text().split()
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 12, f"a trial ran twice: {sorted(runs)}"
    assert recorded_at_kill < 12
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["status"] == "finished" and len(meta["resumed_at"]) == 1


def test_resume_of_an_unknown_sweep_is_one_line(tmp_path, rabbitmq):
    result = sweep(tmp_path, rabbitmq.url, "--resume", "20990101-000000-nothing-0000", "--results", "res")
    assert result.returncode == 2 and "no sweep '20990101-000000-nothing-0000'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broker_restart_mid_sweep_loses_nothing(tmp_path, broker, rabbitmq):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 10]\nsleep: [0.6]\n", extra_tasks=GATED)
    with (
        LocalWorker(broker, project, 1, tmp_path / "a.log", node_name="a@%h"),
        LocalWorker(broker, project, 1, tmp_path / "b.log", node_name="b@%h"),
    ):
        driver = start_sweep(tmp_path, str(project), "--task", "gated", "--results", "res", broker_url=rabbitmq.url)
        try:
            sweep_dir = wait_for_records(tmp_path / "res", 2, timeout=60)
            rabbitmq.restart()
            (project / "gate").touch()
            output, _ = driver.communicate(timeout=240)
        finally:
            if driver.poll() is None:
                driver.kill()
    assert driver.returncode == 0, output
    assert "reconnected to the broker" in output, output
    records = records_of(sweep_dir)
    assert sorted(r["trial"] for r in records) == [f"t{i:04d}" for i in range(10)], "nothing lost, one record each"
    assert all(r["status"] == "SUCCESS" for r in records)


def test_a_pickled_message_on_the_trial_queue_is_refused_and_never_run(tmp_path, broker, rabbitmq):
    from kombu import Connection, Producer

    from mlframework.sweep.wire.app import TRIAL_QUEUE, trial_queue

    project = make_project(tmp_path / "proj", "x: [1]\nsleep: [0]\n", extra_tasks=COUNTED)
    with LocalWorker(broker, project, 1, tmp_path / "w.log", node_name="w@%h"):
        with Connection(rabbitmq.url) as connection:
            Producer(connection).publish(
                # A Celery protocol-2 message, as `apply_async(serializer="pickle")` would send it.
                ((), {"params": {"x": 1, "sleep": 0}, "trial": {"sweep": "evil", "id": "t0000", "index": 0}}, {}),
                serializer="pickle",
                exchange=TRIAL_QUEUE,
                routing_key=TRIAL_QUEUE,
                declare=[trial_queue()],
                headers={"lang": "py", "task": "counted", "id": "evil.t0000", "argsrepr": "", "kwargsrepr": ""},
            )
        time.sleep(3)
        # The same trial as JSON runs: the worker was alive and listening all along.
        result = sweep(tmp_path, rabbitmq.url, str(project), "--task", "counted", "--results", "res")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "runs.log").read_text().split() == ["t0000"], "only the JSON trial ran"
    log = (tmp_path / "w.log").read_text()
    assert "ContentDisallowed" in log or "disallowed" in log.lower(), log[-2000:]
    queues = rabbitmq.ctl("list_queues", "-p", rabbitmq.vhost, "name", "messages").stdout
    assert f"{TRIAL_QUEUE}\t0" in queues, "the refused message is dropped, not redelivered forever"


def test_a_broker_that_stops_answering_is_noticed_within_two_heartbeats(tmp_path, broker, rabbitmq, caplog):
    import logging
    import threading

    from mlframework.sweep.driver.run import run_sweep
    from mlframework.sweep.driver.spec import SweepObserver, SweepSpec
    from mlframework.sweep.params.grid_file import load_grid

    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 6]\nsleep: [0.5]\n", extra_tasks=COUNTED)
    heartbeat = 2.0
    paused_at: list[float] = []

    class PauseOnce(SweepObserver):
        def trial_finished(self, record: dict) -> None:
            if not paused_at:
                rabbitmq.pause()  # frozen, connections stay open: only heartbeats can tell
                paused_at.append(time.monotonic())
                threading.Timer(4 * heartbeat, rabbitmq.resume).start()

    caplog.set_level(logging.WARNING, logger="mlframework.sweep.driver.run")
    spec = SweepSpec(project, load_grid(project / "parameters.yml"), task="counted", results_root=tmp_path / "res")
    with LocalWorker(broker, project, 2, tmp_path / "w.log", node_name="w@%h"):
        try:
            outcome = run_sweep(spec, broker, PauseOnce(), heartbeat=heartbeat)
        finally:
            rabbitmq.resume()
    lost = [r for r in caplog.records if "lost the broker connection" in r.getMessage()]
    assert lost, "the frozen broker was never noticed"
    noticed_after = lost[0].created - (paused_at[0] - time.monotonic() + time.time())
    print(f"frozen broker noticed after {noticed_after:.1f}s (heartbeat {heartbeat:g}s)")
    assert noticed_after <= 2 * heartbeat + 1.5, f"noticed after {noticed_after:.1f}s"
    assert outcome.exit_status == 0 and outcome.succeeded == 6, "and the sweep finished once it was back"
