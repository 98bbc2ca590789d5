"""How trial events are grouped into messages on the worker (no broker: the send callback is the broker)."""

from __future__ import annotations

import time

from mlframework.sweep.wire.events import EventBuffer, OutputStreamer


def test_a_batch_of_short_trials_goes_in_one_message_without_redundant_started_events():
    sent: list[list[dict]] = []
    buffer = EventBuffer(sent.append, interval=60)
    for trial in ("t0", "t1", "t2"):
        buffer.add({"type": "started", "trial": trial})
        buffer.add({"type": "finished", "trial": trial, "status": "SUCCESS"})
    buffer.add({"type": "started", "trial": "t3"})
    buffer.close()
    assert len(sent) == 1, "one message for the whole batch"
    assert [(e["type"], e["trial"]) for e in sent[0]] == [
        ("finished", "t0"),
        ("finished", "t1"),
        ("finished", "t2"),
        ("started", "t3"),
    ], "a started event is dropped only where its finished event travels with it"


def test_a_slow_batch_still_reports_within_the_interval():
    sent: list[list[dict]] = []
    buffer = EventBuffer(sent.append, interval=0.05)
    buffer.add({"type": "finished", "trial": "t0"})
    time.sleep(0.06)
    buffer.add({"type": "started", "trial": "t1"})  # the driver learns of t0 now, not when the batch ends
    assert [[e["trial"] for e in message] for message in sent] == [["t0", "t1"]]
    buffer.close()
    assert len(sent) == 1, "nothing left to send"


def test_output_lines_are_sent_in_batches_and_none_lost():
    batches: list[list[list[str]]] = []
    streamer = OutputStreamer(batches.append, interval=60, max_lines=100)
    streamer.write_lines("stdout", [str(i) for i in range(250)])
    streamer.write("last", "stderr")
    streamer.close()
    lines = [[stream, line] for batch in batches for stream, text in batch for line in text.split("\n")]
    assert lines == [["stdout", str(i)] for i in range(250)] + [["stderr", "last"]]
    assert len(batches) <= 3


def test_a_trial_that_prints_nothing_starts_no_thread():
    streamer = OutputStreamer(lambda lines: None)
    streamer.close()
    assert streamer._thread is None
