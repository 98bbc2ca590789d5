"""Trial events: how workers tell the sweep driver what happens to each trial.

Every sweep owns one durable queue, ``mlframework.events.<sweep-id>``, bound to
the direct exchange ``mlframework.events``. Workers publish JSON events to it
(``started``, ``output``, ``metrics``, ``finished``, ...: their shapes are in
:mod:`mlframework.sweep.wire.protocol`); this module only carries them.

The driver consumes the queue and acknowledges an event only after it has been
written to the results store, so a driver that dies loses nothing: the events
wait in the durable queue until ``--resume``. This replaces a Celery result
backend, which would keep only the last state of each task and drop the
output lines in between.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer

log = logging.getLogger(__name__)

EXCHANGE = Exchange("mlframework.events", type="direct", durable=True)
QUEUE_PREFIX = "mlframework.events."

# Publishing survives a broker restart of up to about two minutes, then fails loudly.
RETRY_POLICY = {"max_retries": 40, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 3.0}


def events_queue(sweep_id: str) -> Queue:
    """The durable queue holding the events of one sweep."""
    return Queue(
        QUEUE_PREFIX + sweep_id,
        exchange=EXCHANGE,
        routing_key=sweep_id,
        durable=True,
        auto_delete=False,
    )


class EventPublisher:
    """Publishes trial events from a worker process; safe to share between threads.

    One connection per process, opened on first use and re-opened after a fork
    (prefork pools fork after the module is imported).
    """

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def _ensure_producer(self) -> Producer:
        if self._producer is None or self._pid != os.getpid():
            self._connection = self._app.connection_for_write()
            self._producer = Producer(self._connection, serializer="json")
            self._pid = os.getpid()
        return self._producer

    def publish(self, sweep_id: str, event: Mapping[str, Any], persistent: bool = True) -> None:
        """Send one event to the sweep's queue, retrying through broker restarts."""
        with self._lock:
            producer = self._ensure_producer()
            producer.publish(
                event,
                exchange=EXCHANGE,
                routing_key=sweep_id,
                declare=[events_queue(sweep_id)],
                delivery_mode=2 if persistent else 1,
                retry=True,
                retry_policy=RETRY_POLICY,
            )

    def close(self) -> None:
        """Close the connection (it is re-opened on the next publish)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.release()
            self._connection = self._producer = None


class OutputStreamer:
    """Buffers a trial's output lines and sends them in batches.

    Lines are flushed every ``interval`` seconds by a background thread, or
    sooner when ``max_lines`` are waiting: one message per batch keeps a chatty
    training script from costing one broker round trip per line. A batch is a
    list of ``[stream, text]`` chunks, ``text`` being consecutive lines of one
    stream joined by newlines: one string to encode, not a pair per line.
    """

    def __init__(
        self,
        publish: Callable[[list[list[str]]], None],
        interval: float = 0.25,
        max_lines: int = 500,
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._max_lines = max_lines
        self._runs: list[tuple[str, list[str]]] = []  # consecutive lines of one stream
        self._count = 0
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._closed = False
        # Started on the first line: most short trials print nothing, and a thread per trial
        # would be a good part of what such a trial costs.
        self._thread: threading.Thread | None = None

    def write(self, line: str, stream: str = "stdout") -> None:
        """Queue one line (without its newline) for sending."""
        self.write_lines(stream, [line])

    def write_lines(self, stream: str, lines: list[str]) -> None:
        """Queue lines of one stream for sending."""
        with self._lock:
            if self._runs and self._runs[-1][0] == stream:
                self._runs[-1][1].extend(lines)
            else:
                self._runs.append((stream, list(lines)))
            self._count += len(lines)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="mlframework-output", daemon=True)
                self._thread.start()
            if self._count >= self._max_lines:
                self._wakeup.set()

    def _take(self) -> list[list[str]]:
        with self._lock:
            runs, self._runs, self._count = self._runs, [], 0
        return [[stream, "\n".join(lines)] for stream, lines in runs]

    def _send(self) -> None:
        chunks = self._take()
        if chunks:
            try:
                self._publish(chunks)
            except Exception:  # live output is best effort; the trial must go on
                log.exception("could not stream %d chunk(s) of output", len(chunks))

    def _run(self) -> None:
        while not self._closed:
            self._wakeup.wait(self._interval)
            self._wakeup.clear()
            self._send()

    def close(self) -> None:
        """Send what is left and stop the background thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._wakeup.set()
            thread.join(timeout=30)
        self._send()


class EventBuffer:
    """Collects the events of a batch of short trials and sends them a few at a time.

    One message carries every event of the last ``interval`` seconds (or
    ``max_events``), instead of two or more messages per trial. A ``started``
    event whose ``finished`` goes in the same message is left out: the record
    says where and when the trial started.
    """

    def __init__(
        self, send: Callable[[list[dict[str, Any]]], None], interval: float = 0.25, max_events: int = 1000
    ) -> None:
        self._send = send
        self._interval = interval
        self._max_events = max_events
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # trials' output threads add events too
        self._sent_at = time.monotonic()

    def add(self, event: dict[str, Any]) -> None:
        """Queue one event; sends the queue when it is full or old enough."""
        with self._lock:
            self._events.append(event)
            if len(self._events) >= self._max_events or time.monotonic() - self._sent_at >= self._interval:
                self._flush()

    def _flush(self) -> None:
        events, self._events = self._events, []
        self._sent_at = time.monotonic()
        if not events:
            return
        finished = {event.get("trial") for event in events if event.get("type") == "finished"}
        self._send([e for e in events if e.get("type") != "started" or e.get("trial") not in finished])

    def close(self) -> None:
        """Send what is left."""
        with self._lock:
            self._flush()


class EventStream:
    """The driver's side: consumes one sweep's events in the calling thread."""

    def __init__(
        self,
        connection: Connection,
        sweep_id: str,
        handler: Callable[[dict[str, Any]], None],
        prefetch: int = 500,
        before_ack: Callable[[], None] | None = None,
        ack_batch: int = 100,
    ) -> None:
        """``before_ack`` makes what the handler wrote durable (one fsync for a batch of events)."""
        self.queue = events_queue(sweep_id)
        self._connection = connection
        self._handler = handler
        self._before_ack = before_ack
        self._ack_batch = min(ack_batch, prefetch // 2 or 1)  # well below prefetch: the stream never stalls
        self._unacked: list[Any] = []
        channel = connection.channel()
        self.queue(channel).declare()
        self._consumer = Consumer(
            channel, queues=[self.queue], callbacks=[self._on_message], accept=["json"], no_ack=False
        )
        self._consumer.qos(prefetch_count=prefetch)
        self._consumer.consume()

    def _on_message(self, body: Any, message: Any) -> None:
        if isinstance(body, dict):
            self._handler(body)
        else:
            log.warning("ignoring a malformed event: %r", body)
        # Acknowledged only once the handler's record is on disk (flush): a
        # crash before that leaves the event in the queue for --resume.
        self._unacked.append(message)
        if len(self._unacked) >= self._ack_batch:
            self.flush()

    def flush(self) -> None:
        """Make the handled events durable, then acknowledge them."""
        if not self._unacked:
            return
        if self._before_ack is not None:
            self._before_ack()
        messages, self._unacked = self._unacked, []
        for message in messages:
            message.ack()

    def drain(self, timeout: float, until: Callable[[], bool] | None = None) -> int:
        """Handle the events that arrive within ``timeout`` seconds, or until ``until()`` holds.

        Returns how many reads had some.
        """
        handled = 0
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return handled
                try:
                    self._connection.drain_events(timeout=remaining)
                    handled += 1
                except TimeoutError:  # socket.timeout is TimeoutError since Python 3.10
                    return handled
                if until is not None and until():
                    return handled
        finally:
            self.flush()

    def cancel(self) -> None:
        """Stop consuming (events left in the queue stay there)."""
        self.flush()
        self._consumer.cancel()

    def delete_queue(self) -> None:
        """Remove the sweep's queue once every trial is recorded."""
        self.queue(self._connection.default_channel).delete()
