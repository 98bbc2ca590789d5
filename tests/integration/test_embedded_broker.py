"""Embedded mode's file broker under load: every message arrives whole and in order, none is lost.

kombu's plain filesystem transport lets a consumer take a message file before
its writer has written it (an empty read, the message lost); the sweep
driver died of it at 2,000 trivial trials. Producers and a consumer in
separate processes, as driver and workers are.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from kombu import Connection

import mlframework.sweep.wire.app  # noqa: F401  (registers mlfs://)

MESSAGES_PER_PRODUCER = 1500


def _options(folder: Path) -> dict:
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.001,
    }


def _produce(folder: str, producer: int) -> None:
    # A spawned process imports this module first, so mlfs:// is registered there too.
    with Connection("mlfs://localhost/", transport_options=_options(Path(folder))) as connection:
        queue = connection.SimpleQueue("trials")
        for number in range(MESSAGES_PER_PRODUCER):
            queue.put({"producer": producer, "number": number, "pad": "x" * 2000})
        queue.close()


def test_concurrent_producers_and_a_consumer_lose_nothing(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    context = multiprocessing.get_context("spawn")
    producers = [context.Process(target=_produce, args=(str(folder), p)) for p in range(2)]
    received: set[tuple[int, int]] = set()
    last = {0: -1, 1: -1}
    with Connection("mlfs://localhost/", transport_options=_options(folder)) as connection:
        queue = connection.SimpleQueue("trials")
        for process in producers:
            process.start()
        while len(received) < 2 * MESSAGES_PER_PRODUCER:
            message = queue.get(timeout=30)  # raises Empty if anything went missing
            body = message.payload
            assert body["pad"] == "x" * 2000, "a message arrived cut short"
            received.add((body["producer"], body["number"]))
            assert body["number"] > last[body["producer"]], "a producer's messages arrive in the order sent"
            last[body["producer"]] = body["number"]
            message.ack()
        queue.close()
    for process in producers:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert len(received) == 2 * MESSAGES_PER_PRODUCER
    assert not list(folder.glob("*.partial")), "no half-written message is left behind"
