"""Dispatch without workers: how many trials go per message, how many are in flight, in which order.

Messages go through kombu's in-memory transport (a real Celery app and producer, no broker process)
and are read back with the protocol's own reader, as a worker reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Queue

from mlframework.sweep.driver.dispatch import Dispatcher, GridSource, Pacing, trial_controls
from mlframework.sweep.params.grid_file import grid_from_mapping
from mlframework.sweep.wire.app import TRIAL_QUEUE
from mlframework.sweep.wire.protocol import message_trials
from mlframework.sweep.wire.protocol import trial_controls as read_controls

# -- Pacing: batch size ----------------------------------------------------------------------------


def test_trials_of_unknown_duration_go_one_per_message_a_few_at_a_time():
    pacing = Pacing(max_batch=200)
    assert pacing.batch_size(unsent=10_000) == 0, "probing"
    assert pacing.room(window=1000, outstanding=0, unsent=10_000, seen=0, sent=0) == Pacing.PROBE_AHEAD
    assert pacing.room(window=1000, outstanding=8, unsent=9_992, seen=3, sent=8) == 3, "one more per sign of life"
    assert pacing.room(window=2, outstanding=0, unsent=10_000, seen=0, sent=0) == 2, "never past the window"


def test_short_trials_share_a_message_of_about_a_quarter_second():
    pacing = Pacing(max_batch=200)
    pacing.observe(0.01)
    assert pacing.batch_size(unsent=10_000) == 25
    pacing.observe(0.0001)  # shorter: followed slowly
    assert 25 < pacing.batch_size(unsent=10_000) <= 200
    assert Pacing(max_batch=1).batch_size(unsent=10_000) == 0, "still probing"
    one = Pacing(max_batch=1)
    one.observe(0.001)
    assert one.batch_size(unsent=10_000) == 1, "--max-batch 1: one trial per message"


def test_batches_shrink_near_the_end_so_the_last_trials_spread_over_every_worker():
    pacing = Pacing(max_batch=200)
    pacing.observe(0.0001)
    assert pacing.batch_size(unsent=100_000) == 200
    assert pacing.batch_size(unsent=40) == 10
    assert pacing.batch_size(unsent=3) == 1


def test_a_much_longer_trial_is_taken_at_once_and_bad_durations_are_ignored():
    pacing = Pacing(max_batch=200)
    pacing.observe(0.01)
    pacing.observe(10.0)
    assert pacing.trial_seconds == 10.0 and pacing.batch_size(unsent=10_000) == 1
    for bad in (None, float("nan"), -1.0, "3"):
        pacing.observe(bad)
    assert pacing.trial_seconds == 10.0


def test_room_waits_for_a_whole_message_unless_the_window_is_smaller():
    pacing = Pacing(max_batch=200)
    pacing.observe(0.01)  # 25 per message
    assert pacing.room(window=100, outstanding=90, unsent=10_000, seen=0, sent=0) == 0
    assert pacing.room(window=100, outstanding=75, unsent=10_000, seen=0, sent=0) == 25
    assert pacing.room(window=10, outstanding=0, unsent=10_000, seen=0, sent=0) == 10
    assert pacing.room(window=10, outstanding=5, unsent=10_000, seen=0, sent=0) == 0, "the whole window, then"


# -- GridSource --------------------------------------------------------------------------------------


def grid(n: int) -> Any:
    return grid_from_mapping({"x": list(range(n))})


def test_the_grid_source_hands_out_combinations_in_order_skipping_recorded_trials():
    recorded = {"t0001", "t0003"}
    source = GridSource(grid(5), 5, start=0, skip=recorded)
    taken = []
    while (item := source.take()) is not None:
        taken.append(item)
    assert taken == [(0, {"x": 0}), (2, {"x": 2}), (4, {"x": 4})]
    assert source.exhausted and source.next_index == 5
    assert not source.done(4) and source.done(5)
    assert source.params(3) == {"x": 3} and source.tell(3, {"status": "FAILURE"}) == "FAILURE"


def test_a_resumed_grid_starts_where_the_last_driver_stopped_sending():
    source = GridSource(grid(5), 5, start=3)
    assert source.take() == (3, {"x": 3})
    assert GridSource(grid(5), 5, start=5).exhausted


# -- Dispatcher: the messages ------------------------------------------------------------------------


@pytest.fixture
def app() -> Any:
    app = Celery("dispatch-test", broker="memory://", set_as_current=False)
    app.conf.task_queues = [Queue(TRIAL_QUEUE)]
    yield app
    with app.connection_for_read() as connection:
        connection.SimpleQueue(TRIAL_QUEUE).clear()


def sent_messages(app: Any) -> list[tuple[str, dict[str, Any]]]:
    """(task id, kwargs) of each message in the trial queue, in order."""
    messages = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(TRIAL_QUEUE)
        while queue.qsize():
            message = queue.get(block=False)
            messages.append((message.headers["id"], message.payload[1]))
            message.ack()
        queue.close()
    return messages


def test_trials_go_in_batches_of_the_size_asked_each_trial_with_its_controls(app, tmp_path: Path):
    source = GridSource(grid(10), 10)
    dispatcher = Dispatcher(app, "train", "sw", source, trial_controls(tmp_path, 60.0), epoch=2)
    assert dispatcher.send(10, lambda unsent: 4) == 10 and dispatcher.sent == 10
    messages = sent_messages(app)
    assert [task_id for task_id, _ in messages] == ["sw.t0000+4", "sw.t0004+4", "sw.t0008+2"]
    trials = [trial for _, kwargs in messages for trial in message_trials(kwargs)]
    assert [t["id"] for t in trials] == [f"t{i:04d}" for i in range(10)]
    assert {(t["sweep"], t["attempt"], t["epoch"]) for t in trials} == {("sw", 1, 2)}
    assert read_controls(trials[0]) == {"timeout": 60.0, "sweep_dir": str(tmp_path.resolve())}
    assert messages[2][1]["batch"][1]["params"] == {"x": 9}


def test_send_stops_at_how_many_and_goes_on_from_there(app, tmp_path: Path):
    dispatcher = Dispatcher(app, "train", "sw", GridSource(grid(10), 10), trial_controls(tmp_path, None))
    assert dispatcher.send(3) == 3
    assert dispatcher.send(100) == 7
    assert dispatcher.send(100) == 0
    messages = sent_messages(app)
    assert [task_id for task_id, _ in messages] == [f"sw.t{i:04d}" for i in range(10)], "one per message"
    assert "timeout" not in messages[0][1]["trial"], "no --trial-timeout given"


def test_a_retry_goes_alone_with_its_attempt_and_the_worker_to_avoid(app, tmp_path: Path):
    dispatcher = Dispatcher(app, "train", "sw", GridSource(grid(10), 10), trial_controls(tmp_path, None))
    dispatcher.resend(7, attempt=2, avoid="w1@host")
    ((task_id, kwargs),) = sent_messages(app)
    assert task_id == "sw.t0007.a2"
    assert kwargs["params"] == {"x": 7}
    assert (kwargs["trial"]["attempt"], kwargs["trial"]["avoid"]) == (2, "w1@host")
    assert dispatcher.sent == 0, "a retry is not a new trial"


def test_each_trial_message_names_the_metrics_the_sweep_asked_for(app, tmp_path: Path):
    controls = trial_controls(tmp_path, None, ("val loss", None, "val loss"))
    dispatcher = Dispatcher(app, "train", "sw", GridSource(grid(2), 2), controls)
    dispatcher.send(2)
    trials = [trial for _, kwargs in sent_messages(app) for trial in message_trials(kwargs)]
    assert [read_controls(t)["metric_names"] for t in trials] == [("val loss",), ("val loss",)]
    assert "metrics" not in trial_controls(tmp_path, None, (None, None)), "none asked: the message as before"
