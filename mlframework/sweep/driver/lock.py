"""One driver per sweep, across machines: an exclusive consumer on the broker, and who holds it.

A sweep's driver holds the only consumer of ``mlframework.driver.<sweep-id>``
(``basic.consume`` with ``exclusive``), on its own connection to the broker; a
second driver of the sweep (``--resume`` on another machine, a second
``--detach``) is refused by the broker (``ACCESS_REFUSED``) and stops before it
writes anything, naming the host and process of the first, which the first
left in ``mlframework.driver.<sweep-id>.holder`` (a queue holding one message,
``x-max-length`` 1). A lock file could not do this: drivers of one sweep may
run on different machines, but they all reach the same broker. The broker
drops the consumer with the connection, so a driver that was killed never
blocks its ``--resume``.

Only RabbitMQ (AMQP) has exclusive consumers; in embedded mode the broker lives
in the driver's own process and there is nobody else to refuse.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

from mlframework.exceptions import SweepError

log = logging.getLogger(__name__)

PREFIX = "mlframework.driver."


class DriverLock:
    """The held lock of one sweep; :meth:`release` gives it back (and removes its queues once the sweep ended)."""

    def __init__(self, channel: Any, sweep_id: str) -> None:
        self.channel = channel
        self.sweep_id = sweep_id

    def release(self, delete: bool = False) -> None:
        """Stop holding the lock; ``delete`` (the sweep ended) removes its queues too."""
        try:
            if delete:
                self.channel.queue_delete(PREFIX + self.sweep_id)
                self.channel.queue_delete(PREFIX + self.sweep_id + ".holder")
            self.channel.close()
        except Exception:  # the connection may be gone already: the broker then dropped the consumer itself
            log.debug("releasing the driver lock of %s failed", self.sweep_id, exc_info=True)


def _holder(connection: Any, sweep_id: str) -> str:
    channel = connection.channel()
    try:
        message = channel.basic_get(PREFIX + sweep_id + ".holder", no_ack=False)
        if message is None:
            return "another driver"
        info = json.loads(message.body)
        return f"the driver pid {info.get('pid')} on {info.get('host')} (since {info.get('since')})"
    except Exception:  # the refusal stands even when its holder cannot be read
        log.debug("cannot read the holder of %s", sweep_id, exc_info=True)
        return "another driver"
    finally:
        try:
            channel.close()  # the holder message goes back to its queue (not acknowledged)
        except Exception:
            log.debug("closing the channel failed", exc_info=True)


def acquire(connection: Any, sweep_id: str) -> DriverLock | None:
    """Hold the sweep's driver lock on ``connection`` (kombu); SweepError naming the holder if another has it.

    None where the transport has no exclusive consumers (embedded mode).
    """
    if getattr(connection.transport, "driver_type", "") != "amqp":
        return None
    channel = connection.channel()
    lock, holder = PREFIX + sweep_id, PREFIX + sweep_id + ".holder"
    channel.queue_declare(lock, durable=True, auto_delete=False)
    channel.queue_declare(holder, durable=True, auto_delete=False, arguments={"x-max-length": 1})
    try:
        channel.basic_consume(lock, no_ack=True, callback=lambda message: None, exclusive=True)
    except connection.channel_errors as exc:
        if "ACCESS_REFUSED" not in str(exc) and "exclusive" not in str(exc):
            raise
        raise SweepError(
            f"sweep {sweep_id} is being driven by {_holder(connection, sweep_id)}; "
            "stop that driver first (or follow it with `mlframework follow`)"
        ) from None
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    body = json.dumps(info).encode()
    message = channel.prepare_message(body, content_type="application/json", content_encoding="binary")
    channel.basic_publish(message, exchange="", routing_key=holder)
    log.info("driving sweep %s (pid %d on %s)", sweep_id, info["pid"], info["host"])
    return DriverLock(channel, sweep_id)
