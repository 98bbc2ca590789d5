"""The driver's connection to the broker: bounded connect, heartbeats, how long to try to get it back."""

from __future__ import annotations

from typing import Any

from kombu.exceptions import OperationalError

from mlframework.exceptions import SweepError
from mlframework.sweep.wire.app import BrokerSettings

# Seconds between AMQP heartbeats of the driver's connection: a broker that stops answering without
# closing the connection (a frozen host, a cut cable) is noticed after two missed intervals.
DRIVER_HEARTBEAT = 10.0
# How long the driver tries to get the broker back before it gives up (the sweep can be resumed later).
RECONNECT_SECONDS = 180.0


def connect(
    app: Any, broker: BrokerSettings, timeout: float, max_retries: int | None = 3, heartbeat: float | None = None
) -> Any:
    """A connection to the broker; ``timeout`` bounds all attempts together (kombu's ensure_connection)."""
    connection = app.connection_for_write(heartbeat=heartbeat) if heartbeat else app.connection_for_write()
    try:
        connection.ensure_connection(
            max_retries=max_retries, interval_start=0.5, interval_step=1, interval_max=3, timeout=timeout
        )
    except (OperationalError, OSError) as exc:
        connection.release()
        raise SweepError(f"cannot reach the broker at {broker.redacted_url()}: {exc}") from None
    return connection
