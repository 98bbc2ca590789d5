"""The driver's loop fed events by hand: what it records and what it sends again, without workers.

Trial messages go through kombu's in-memory transport (a real Celery app, no broker process);
records go to a real results store. The same with real workers killed under them is in
tests/integration/test_reliability.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Queue

from mlframework.statuses import FAILURE, SUCCESS
from mlframework.sweep.driver.loop import SweepRun
from mlframework.sweep.driver.spec import SweepObserver, SweepSpec
from mlframework.sweep.params.grid_file import grid_from_mapping
from mlframework.sweep.records.results import ResultsStore
from mlframework.sweep.wire.app import TRIAL_QUEUE
from mlframework.sweep.wire.protocol import message_trials

SWEEP = "loop-test"


@pytest.fixture
def app() -> Any:
    app = Celery("loop-test", broker="memory://", set_as_current=False)
    app.conf.task_queues = [Queue(TRIAL_QUEUE)]
    yield app
    with app.connection_for_read() as connection:
        connection.SimpleQueue(TRIAL_QUEUE).clear()


def make_run(app: Any, tmp_path: Path, **spec_options: Any) -> SweepRun:
    grid = grid_from_mapping({"x": list(range(6))})
    spec = SweepSpec(tmp_path, grid, results_root=tmp_path / "res", sweep_id=SWEEP, **spec_options)
    store = ResultsStore.create(tmp_path / "res", {"id": SWEEP}, grid.names)
    run = SweepRun(app, None, None, spec, SWEEP, store, {"id": SWEEP}, SweepObserver())  # type: ignore[arg-type]
    run._open_source(0, 0)
    return run


def sent(app: Any) -> list[tuple[str, list[str]]]:
    """(task id, trial ids) of each message waiting in the trial queue."""
    messages = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(TRIAL_QUEUE)
        while queue.qsize():
            message = queue.get(block=False)
            messages.append((message.headers["id"], [t["id"] for t in message_trials(message.payload[1])]))
            message.ack()
        queue.close()
    return messages


def started(trial: str, pid: int, attempt: int = 1) -> dict[str, Any]:
    return {
        "type": "started",
        "trial": trial,
        "index": int(trial[1:]),
        "attempt": attempt,
        "host": "h",
        "gpu": None,
        "pid": pid,
        "redelivered": pid > 1,
        "time": float(pid),
        "worker": "w1@h",
    }


def finished(trial: str, status: str, attempt: int = 1, worker: str = "w1@h") -> dict[str, Any]:
    return {
        "type": "finished",
        "trial": trial,
        "index": int(trial[1:]),
        "status": status,
        "params": {"x": int(trial[1:])},
        "duration_s": 0.5,
        "error": None if status == SUCCESS else "exit code 1",
        "attempt": attempt,
        "worker": worker,
    }


def test_a_trial_that_killed_its_worker_max_starts_times_is_recorded_failure_and_not_sent_again(app, tmp_path):
    run = make_run(app, tmp_path, max_starts=3)
    for pid in range(1, 5):
        run.on_message(started("t0001", pid))
    record = run.store.records["t0001"]
    assert record["status"] == FAILURE and "died 3 times" in record["error"]
    assert record["params"] == {"x": 1}
    # Its batch given back by the lost worker, or a fifth start: nothing is sent, nothing recorded twice.
    run.on_message(
        {"type": "returned", "batch": "m1", "worker": "w1@h", "trials": [{"sweep": SWEEP, "id": "t0001", "index": 1}]}
    )
    run.on_message(started("t0001", 5))
    assert sent(app) == []
    assert len(run.store.records) == 1


def test_a_failed_trial_is_retried_on_another_worker_then_recorded_with_its_attempts(app, tmp_path):
    run = make_run(app, tmp_path, retries=1)
    run.on_message(finished("t0002", FAILURE, attempt=1, worker="w1@h"))
    assert "t0002" not in run.store.records
    assert sent(app) == [("loop-test.t0002.a2", ["t0002"])]
    run.on_message(finished("t0002", FAILURE, attempt=1))  # the first result again: ignored
    run.on_message(finished("t0002", FAILURE, attempt=2, worker="w2@h"))
    record = run.store.records["t0002"]
    assert record["status"] == FAILURE and record["attempt"] == 2
    assert [a["worker"] for a in record["attempts"]] == ["w1@h"]
    assert sent(app) == [], "retries spent: not sent a third time"


def test_a_batch_of_events_is_recorded_in_order_and_a_cancelled_trial_is_not(app, tmp_path):
    run = make_run(app, tmp_path)
    cancelled = {**finished("t0004", FAILURE), "stopped": "cancelled"}
    run.on_message({"type": "events", "events": [finished("t0003", SUCCESS), cancelled]})
    assert list(run.store.records) == ["t0003"], "a trial stopped by a cancel runs again on --resume"
    run.on_message({"type": "cancelled", "by": "me@laptop"})
    assert run.cancelled


def test_the_first_trials_go_one_per_message_until_a_duration_is_known(app, tmp_path):
    run = make_run(app, tmp_path, max_batch=200)
    run._dispatch(window=1000)
    assert [trials for _, trials in sent(app)] == [[f"t000{i}"] for i in range(6)], "6 < PROBE_AHEAD"
