"""The worker-driver protocol: what workers build is what the driver reads, older workers included."""

from __future__ import annotations

import json
from typing import Any

from mlframework.sweep.wire.protocol import (
    cancelled_event,
    decode,
    events_batch,
    leased_event,
    message_trials,
    metrics_event,
    output_event,
    returned_event,
    started_event,
    trial_controls,
)


def wire(event: Any) -> Any:
    return json.loads(json.dumps(event))  # what kombu's json serializer carries


def test_every_event_a_worker_builds_reads_back_unchanged():
    trial = {"sweep": "s", "id": "t0002", "index": 2, "attempt": 1}
    events = [
        started_event("t0002", 2, 1, "gpu1", "0", 42, False, 1.5, {"hash": "ab", "packages": ["x==1"]}),
        output_event("t0002", "gpu1", [["stdout", "a\nb"]]),
        metrics_event("t0002", 2, 1, "gpu1", [{"step": 1, "acc": 0.5}]),
        leased_event(trial, "w1@gpu1", 7, 600.0, 2.0),  # type: ignore[arg-type]
        returned_event("s.t0002+2", "w1@gpu1", [trial]),  # type: ignore[list-item]
        cancelled_event("me@laptop"),
    ]
    for event in events:
        assert decode(wire(event)) == event
    assert decode(wire(events_batch(events[:3]))) == events_batch(events[:3])


def test_events_of_older_workers_get_their_defaults():
    assert decode({"type": "output", "trial": "t1", "host": "h", "lines": [["stdout", "x"]]})["chunks"] == [
        ["stdout", "x"]
    ]
    finished = decode({"type": "finished", "trial": "t1", "status": "SUCCESS"})
    assert (finished["attempt"], finished["index"]) == (1, 0)
    returned = decode({"type": "returned", "batch": "b", "trials": [{"sweep": "s", "id": "t1", "index": 1}]})
    assert returned["trials"][0]["attempt"] == 1


def test_what_is_not_an_event_is_dropped_not_fatal(caplog):
    assert decode(["not", "a", "mapping"]) is None
    assert decode({"type": "no-such-type"}) is None
    assert decode({"type": "started", "trial": "t1", "attempt": "two"}) is None
    batch = decode({"type": "events", "events": [{"type": "bogus"}, {"type": "cancelled"}, 3]})
    assert batch == events_batch([cancelled_event("?")])
    metrics = decode({"type": "metrics", "trial": "t1", "history": [{"a": 1}, "junk"]})
    assert metrics["history"] == [{"a": 1}]


def test_message_trials_reads_a_single_trial_and_a_batch():
    one = {"params": {"x": 1}, "trial": {"sweep": "s", "id": "t0", "index": 0, "attempt": 1}}
    assert [t["id"] for t in message_trials(one)] == ["t0"]
    batch = {"batch": [one, {"params": {}, "trial": {"sweep": "s", "id": "t1"}}, {"params": {}, "trial": {"id": "t2"}}]}
    assert [t["id"] for t in message_trials(batch)] == ["t0", "t1"], "an entry without a sweep is not a trial"
    assert message_trials(None) == [] and message_trials({"params": {}}) == []


def test_trial_controls_take_a_positive_timeout_and_a_sweep_directory():
    assert trial_controls({"timeout": 30, "sweep_dir": "/r/s"}) == {"timeout": 30.0, "sweep_dir": "/r/s"}
    assert trial_controls({"timeout": 0}) == {"timeout": None, "sweep_dir": None}
    assert trial_controls({"timeout": "10"}) == {"timeout": None, "sweep_dir": None}


def test_trial_controls_carry_the_metrics_the_sweep_asked_for_when_the_message_names_them():
    assert trial_controls({"metrics": ["val loss", "acc"]})["metric_names"] == ("val loss", "acc")
    assert "metric_names" not in trial_controls({}), "an older driver's message: nothing asked"
