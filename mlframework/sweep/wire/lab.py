"""The lab's registry of live sweeps: what every driver of a broker tells the others, once a second.

Each driver on a RabbitMQ broker publishes a small state message
(:class:`SweepState`: its sweep, owner, ``--share``, ``--priority``, trials
queued, running and done, an ETA) to the fanout exchange ``mlframework.lab``
every :data:`ANNOUNCE_SECONDS`, and reads the others' from a queue of its own
(exclusive, deleted by the broker with the driver's connection). A sweep that
ends says goodbye; a driver that dies just stops announcing, and the others
forget it after :data:`EXPIRE_SECONDS`. A newcomer (a driver starting, or
``mlframework status``) says hello and every live driver answers at once, so
nobody waits a whole period to learn who is there.

Why the broker and not a file or a server of our own: drivers of one cluster
run on different machines (each user's laptop, the master with ``--detach``),
and the broker is the one thing they all reach. Fanout plus per-driver queues is
AMQP's own way to tell every listener; nothing is stored, so there is nothing to
clean up. Embedded mode has one sweep per broker and no registry.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import time
from typing import Any, TypedDict

log = logging.getLogger(__name__)

EXCHANGE = "mlframework.lab"
#: Seconds between a driver's announcements.
ANNOUNCE_SECONDS = 1.0
#: A sweep not heard of for this long is taken for gone (its driver died): its share goes to the others.
EXPIRE_SECONDS = 4.0
#: How long a newcomer listens for the answers to its hello.
HELLO_SECONDS = 0.5


class RunningTrial(TypedDict):
    """One trial a sweep runs now, as its driver saw it start."""

    trial: str
    host: str
    worker: str
    gpu: str | None
    since: str  # UTC, ISO 8601


class SweepState(TypedDict):
    """What a live sweep's driver announces."""

    sweep: str
    project: str
    owner: str  # user@machine of the driver
    share: float
    priority: int
    total: int
    done: int
    running: int
    queued: int
    wants: bool  # it has trials left to send
    eta_s: float | None
    started_at: str
    slots: int  # the most trial slots this driver has seen busy at once (its estimate of the cluster's)
    running_trials: list[RunningTrial]


def owner() -> str:
    """``user@machine`` of this process, as the lab sees a driver."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def supported(connection: Any) -> bool:
    """Whether ``connection`` (kombu) reaches a broker with a registry: RabbitMQ, not embedded mode's files."""
    return getattr(connection.transport, "driver_type", "") == "amqp"


class LabRegistry:
    """One listener's view of the live sweeps on a broker, and its voice there.

    ``me``: the sweep this listener drives (its own announcements are not
    counted among the others), or None for a bystander such as ``status``.
    """

    def __init__(self, connection: Any, me: str | None = None) -> None:
        self.me = me
        self.sweeps: dict[str, SweepState] = {}
        self.heard: dict[str, float] = {}  # sweep -> time.monotonic() when it was last heard of
        self.hello_received = False  # a newcomer asked: answer now, not at the next period
        self.channel = connection.channel()
        self.channel.exchange_declare(EXCHANGE, "fanout", durable=True, auto_delete=False)
        declared = self.channel.queue_declare("", exclusive=True, auto_delete=True)
        self.queue = declared.queue if hasattr(declared, "queue") else declared[0]
        self.channel.queue_bind(self.queue, EXCHANGE, routing_key="")
        # Pushed by the broker and handled wherever the connection's events are drained (the driver's loop):
        # no request waits for an answer once this consumer is set, so a frozen broker never blocks the
        # loop before its heartbeat check notices it.
        self.channel.basic_consume(self.queue, no_ack=True, callback=self._received)

    def _publish(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        prepared = self.channel.prepare_message(body, content_type="application/json", content_encoding="binary")
        self.channel.basic_publish(prepared, exchange=EXCHANGE, routing_key="")

    def announce(self, state: SweepState) -> None:
        """Tell every listener this sweep's state."""
        self._publish({"type": "sweep", "state": dict(state)})

    def hello(self) -> None:
        """Ask every live driver to announce itself now."""
        self._publish({"type": "hello", "from": self.me})

    def goodbye(self) -> None:
        """This listener's sweep ended (or its driver stops): forget it now, not after EXPIRE_SECONDS."""
        if self.me is not None:
            self._publish({"type": "gone", "sweep": self.me})

    def _received(self, message: Any) -> None:
        try:
            body = json.loads(message.body)
        except ValueError:
            log.debug("ignoring an unreadable lab message")
            return
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "hello" and body.get("from") != self.me:
            self.hello_received = True
        elif kind == "gone":
            self.sweeps.pop(str(body.get("sweep")), None)
        elif kind == "sweep" and isinstance(body.get("state"), dict):
            state = body["state"]
            if state.get("sweep") != self.me:
                self.sweeps[str(state.get("sweep"))] = state
                self.heard[str(state.get("sweep"))] = time.monotonic()

    def forget_silent(self) -> None:
        """Forget the sweeps not heard of for EXPIRE_SECONDS: their drivers stopped, their shares are free."""
        now = time.monotonic()
        for sweep in list(self.sweeps):
            if now - self.heard.get(sweep, now) > EXPIRE_SECONDS:
                log.info("sweep %s is no longer heard of (its driver stopped): its share is released", sweep)
                del self.sweeps[sweep]

    def others(self) -> list[SweepState]:
        """The other live sweeps, as last heard."""
        return list(self.sweeps.values())

    def close(self) -> None:
        """Stop listening (the broker deletes the queue)."""
        try:
            self.channel.close()
        except Exception:  # the connection may be gone already; the broker then dropped the queue itself
            log.debug("closing the lab channel failed", exc_info=True)


def live_sweeps(connection: Any, listen: float = HELLO_SECONDS + 0.3) -> list[SweepState]:
    """Every live sweep on the broker of ``connection``, as its driver announces it (a bystander's hello)."""
    registry = LabRegistry(connection)
    try:
        registry.hello()
        deadline = time.monotonic() + listen
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                connection.drain_events(timeout=remaining)
            except TimeoutError:
                break
        return sorted(registry.others(), key=lambda state: state.get("started_at", ""))
    finally:
        registry.close()


def worker_slots(app: Any, connection: Any, timeout: float = 1.0) -> int | None:
    """Trials the workers of the trial queue run at once (their pools' sizes), or None when none answers.

    The queue's consumer count says how many worker nodes to wait for, so the
    answer comes as soon as they all replied rather than after ``timeout``.
    """
    from mlframework.sweep.wire.app import TRIAL_QUEUE

    channel = connection.channel()
    try:
        nodes = channel.queue_declare(TRIAL_QUEUE, passive=True).consumer_count
    except connection.channel_errors:  # no worker declared the queue yet
        return None
    finally:
        try:
            channel.close()
        except Exception:  # a passive declare of a missing queue closed it already
            log.debug("closing the channel failed", exc_info=True)
    if not nodes:
        return None
    stats = app.control.inspect(timeout=timeout, limit=nodes).stats() or {}
    sizes = [node.get("pool", {}).get("max-concurrency") for node in stats.values() if isinstance(node, dict)]
    total = sum(size for size in sizes if isinstance(size, int))
    return total or None
