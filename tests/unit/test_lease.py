"""The worker's trial lease without a broker: prefetch bookkeeping and the order of lease, event and ack.

The real thing (a broker that cuts unacknowledged deliveries, killed workers)
is in tests/integration/test_long_trials.py.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from celery.worker.state import active_requests
from kombu.common import QoS

from mlframework.sweep.trials.lease import TrialLease
from mlframework.sweep.wire.app import LEASE_SETTING


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Any] = []


class FakeConsumer:
    """The worker's task consumer: cancel() stops deliveries, consume() starts them again."""

    def __init__(self, journal: Recorder) -> None:
        self.journal = journal
        self.channel = object()

    def cancel(self) -> None:
        self.journal.calls.append("cancel")

    def consume(self) -> None:
        self.journal.calls.append("consume")


class FakeRequest:
    def __init__(self, journal: Recorder, channel: object, ran_for: float, trial: str = "t0000") -> None:
        self.journal = journal
        self.acknowledged = False
        self.task = SimpleNamespace(acks_late=True)
        self.time_start = time.time() - ran_for
        self.message = SimpleNamespace(channel=channel)
        self.kwargs = {"params": {}, "trial": {"sweep": "s1", "id": trial, "index": int(trial[1:]), "attempt": 1}}
        self.worker_pid = 4242

    def acknowledge(self) -> None:
        self.journal.calls.append(("ack", self.kwargs["trial"]["id"]))
        self.acknowledged = True


class FakePublisher:
    def __init__(self, journal: Recorder, fail: bool = False) -> None:
        self.journal, self.fail = journal, fail

    def publish(self, sweep_id: str, event: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("broker away")
        self.journal.calls.append(("event", sweep_id, event["type"], event["trial"]))


def consumer(processes: int, journal: Recorder) -> SimpleNamespace:
    c = SimpleNamespace(
        app=SimpleNamespace(conf={LEASE_SETTING: 1.0}),
        pool=SimpleNamespace(num_processes=processes),
        prefetch_multiplier=1,
        hostname="w@host",
        task_consumer=FakeConsumer(journal),
    )
    c.qos = QoS(lambda prefetch_count: journal.calls.append(("prefetch", prefetch_count)), processes)
    c.qos.update()
    journal.calls.clear()
    return c


@pytest.fixture
def running() -> Any:
    """Requests put here count as running in this worker (celery.worker.state.active_requests)."""
    added: list[Any] = []

    def run(*requests: Any) -> None:
        for request in requests:
            active_requests.add(request)
            added.append(request)

    yield run
    for request in added:
        active_requests.discard(request)


def lease_step(c: SimpleNamespace, journal: Recorder, fail: bool = False) -> TrialLease:
    step = TrialLease(c)
    step._publisher = FakePublisher(journal, fail)  # type: ignore[assignment]
    return step


def test_the_slot_goes_before_the_ack_and_the_driver_is_told_before_it(running):
    journal = Recorder()
    c = consumer(2, journal)
    step = lease_step(c, journal)
    young, old = (
        FakeRequest(journal, c.task_consumer.channel, 0.2, "t0001"),
        FakeRequest(journal, c.task_consumer.channel, 5.0, "t0000"),
    )
    running(young, old)
    step._tick(c)
    assert journal.calls == [("prefetch", 1), ("event", "s1", "leased", "t0000"), ("ack", "t0000")]
    journal.calls.clear()
    step._tick(c)
    assert journal.calls == [], "leased once"


def test_every_process_leased_stops_consuming_and_ends_give_the_slots_back(running):
    journal = Recorder()
    c = consumer(2, journal)
    step = lease_step(c, journal)
    first, second = (FakeRequest(journal, c.task_consumer.channel, 5.0, t) for t in ("t0000", "t0001"))
    running(first, second)
    step._tick(c)
    calls = [call for call in journal.calls if call[0] != "event"]
    assert calls[0] == ("prefetch", 1) and calls[2] == "cancel", calls  # each slot before its ack
    assert {calls[1], calls[3]} == {("ack", "t0000"), ("ack", "t0001")}
    journal.calls.clear()
    active_requests.discard(first)  # one trial ends
    step._tick(c)
    assert journal.calls == ["consume"] and c.qos.value == 1
    journal.calls.clear()
    active_requests.discard(second)
    step._tick(c)
    assert journal.calls == [("prefetch", 2)] and step._reduced == 0


def test_after_a_reconnect_a_leased_trial_still_holds_its_slot(running):
    journal = Recorder()
    c = consumer(2, journal)
    step = lease_step(c, journal)
    request = FakeRequest(journal, c.task_consumer.channel, 5.0)
    running(request)
    step._tick(c)
    journal.calls.clear()
    # A new connection: Celery made a new QoS, at 1 for the request it saw running, and restores it to 2 later.
    c.task_consumer = FakeConsumer(journal)
    c.qos = QoS(lambda prefetch_count: journal.calls.append(("prefetch", prefetch_count)), 1)
    c.qos.update()
    step._tick(c)
    c.qos.increment_eventually()
    c.qos.update()
    step._tick(c)
    assert journal.calls == [("prefetch", 1), ("prefetch", 2), ("prefetch", 1)]
    active_requests.discard(request)
    step._tick(c)
    assert c.qos.value == 2


def test_a_delivery_of_an_earlier_connection_or_another_task_is_not_leased(running):
    journal = Recorder()
    c = consumer(2, journal)
    step = lease_step(c, journal)
    stale = FakeRequest(journal, object(), 5.0, "t0000")  # the broker has given it back already
    foreign = FakeRequest(journal, c.task_consumer.channel, 5.0, "t0001")
    foreign.kwargs = {"x": 1}  # not a trial: no driver to send it again
    running(stale, foreign)
    step._tick(c)
    assert journal.calls == []


def test_no_ack_when_the_driver_cannot_be_told(running):
    journal = Recorder()
    c = consumer(1, journal)
    step = lease_step(c, journal, fail=True)
    request = FakeRequest(journal, c.task_consumer.channel, 5.0)
    running(request)
    step._tick(c)
    assert not request.acknowledged and journal.calls == ["cancel", "consume"] and step.leased == []


def test_a_long_batch_tells_the_driver_of_each_of_its_trials_before_the_ack(running):
    journal = Recorder()
    c = consumer(2, journal)
    step = lease_step(c, journal)
    batch = FakeRequest(journal, c.task_consumer.channel, ran_for=5.0)
    batch.kwargs = {
        "batch": [
            {"params": {}, "trial": {"sweep": "s1", "id": f"t000{i}", "index": i, "attempt": 1}} for i in range(3)
        ]
    }
    batch.acknowledge = lambda: (journal.calls.append(("ack", "batch")), setattr(batch, "acknowledged", True))
    running(batch)
    step._tick(c)
    events = [call for call in journal.calls if call[0] == "event"]
    assert events == [("event", "s1", "leased", f"t000{i}") for i in range(3)]
    assert journal.calls.index(("ack", "batch")) > journal.calls.index(events[-1])
