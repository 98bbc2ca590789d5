"""Cancel a sweep: its queued trials never run, its running ones stop, its driver ends; records stay.

``mlframework cancel SWEEP_ID`` calls :func:`cancel_sweep`, which, in order:

1. on a cluster, ends the sweep's live epoch on the broker (:func:`mlframework.sweep.wire.liveness.end_sweep`):
   every worker drops the sweep's queued trials on arrival, without running them;
2. on a cluster, stops the trials that run now, on whatever host
   (:func:`mlframework.sweep.wire.control.stop_trials`: SIGTERM to the command's process group,
   SIGKILL after ``grace``); a trial stopped so is not recorded, so ``--resume`` runs it again;
3. ends the driver: a live cluster driver, wherever it runs (another terminal, another machine, a
   ``--detach`` container on the master), gets a ``cancelled`` event on the sweep's event queue
   and stops, writing ``cancelled`` itself; an embedded-mode driver (whose broker is a directory
   nobody else reaches) is sent SIGTERM, which ends it, its workers and its trials as Ctrl-C
   does (it finds ``status: cancelled`` recorded already and ends with that word); this waits for
   a driver on this host to exit;
4. records ``status: cancelled`` in sweep.json (again: the driver's own end is overwritten). Every
   record already written stays, and ``mlframework sweep --resume SWEEP_ID`` continues the sweep
   in a new epoch (its old queued copies stay dead, see :mod:`mlframework.sweep.wire.liveness`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlframework.exceptions import ConfigError, SweepError
from mlframework.sweep.driver import lock as driver_lock
from mlframework.sweep.records.catalog import driver_alive, driver_status, read_meta
from mlframework.sweep.wire import control, liveness
from mlframework.sweep.wire.app import BrokerSettings, create_app
from mlframework.sweep.wire.events import EventPublisher
from mlframework.sweep.wire.protocol import cancelled_event
from mlframework.system.fileio import write_text_atomic as _atomic_write

log = logging.getLogger(__name__)

#: Epochs ended when no local record says which one is live (a --detach sweep whose record is on the master).
_UNKNOWN_EPOCHS = 20


@dataclass
class CancelOutcome:
    """What a cancel did."""

    sweep_id: str
    directory: Path | None  # the local sweep directory, when there is one
    stopped: dict[str, list[str]] = field(default_factory=dict)  # worker -> trials it stopped
    driver: str = ""  # what became of the driver, in words


def is_embedded(meta: dict[str, Any] | None) -> bool:
    """Whether the sweep recorded in ``meta`` ran in embedded mode (its broker a directory)."""
    return bool(meta) and str((meta or {}).get("broker") or "").startswith("mlfs:")


def cancel_sweep(
    results_root: str | os.PathLike[str],
    sweep_id: str,
    broker: BrokerSettings | None,
    *,
    grace: float = 10.0,
    wait: float = 20.0,
) -> CancelOutcome:
    """Cancel sweep ``sweep_id`` (see the module docstring); raises SweepError/ConfigError for one-line refusals."""
    directory = Path(results_root) / sweep_id
    meta = read_meta(directory) if directory.exists() else None
    if meta is None and broker is None:
        raise SweepError(f"{directory}: no sweep {sweep_id!r} here (check --results, or give --broker for a cluster)")
    if meta is not None:
        status, _ = driver_status(meta)
        if status in ("finished", "cancelled"):
            raise SweepError(f"sweep {sweep_id} is {status}: nothing to cancel")
    outcome = CancelOutcome(sweep_id, directory if meta is not None else None)
    if not is_embedded(meta):
        if broker is None:
            raise ConfigError(
                f"sweep {sweep_id} ran on a cluster ({(meta or {}).get('broker')}): no broker here; "
                "run cancel from the checkout that started the cluster, or give --broker URL"
            )
        outcome.stopped = _cancel_on_broker(broker, sweep_id, meta, grace)
    if meta is not None:  # first: a driver ended by SIGTERM reads it, and says "cancelled" as `ls` will
        _record_cancelled(directory)
    outcome.driver = _end_driver(meta, wait)
    if meta is not None:
        _record_cancelled(directory)
    return outcome


def _cancel_on_broker(
    broker: BrokerSettings, sweep_id: str, meta: dict[str, Any] | None, grace: float
) -> dict[str, list[str]]:
    app = create_app(broker)
    epochs = [int(meta.get("epoch") or 0)] if meta is not None else list(range(_UNKNOWN_EPOCHS))
    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=3, interval_start=0.5, interval_step=1, timeout=10)
        except Exception as exc:
            raise SweepError(f"cannot reach the broker at {broker.redacted_url()}: {exc}") from None
        for epoch in epochs:
            try:
                liveness.end_sweep(connection, sweep_id, epoch, "cancelled")
            except connection.channel_errors:  # no such mark: that epoch never was (or already ended)
                log.debug("no live mark for epoch %d of %s", epoch, sweep_id)
    # The driver, wherever it runs, reads its event queue: this tells it to stop (and record "cancelled").
    # Only a live driver is told: the event would wait in the queue for the next `--resume` and stop it at once.
    if _driver_holds_lock(app, sweep_id):
        publisher = EventPublisher(app)
        try:
            publisher.publish(sweep_id, cancelled_event(f"{getpass.getuser()}@{socket.gethostname()}"))
        finally:
            publisher.close()
    stopped = control.stop_trials(app, sweep_id, None, "cancelled", grace, reply=True, timeout=2.0)
    # A worker trusts "live" for LIVE_CACHE_SECONDS: a trial it took in that window starts after the first
    # broadcast; a second one once the cache has run out stops it too.
    time.sleep(liveness.LIVE_CACHE_SECONDS + 0.5)
    for worker, trials in control.stop_trials(app, sweep_id, None, "cancelled", grace, reply=True, timeout=2.0).items():
        stopped.setdefault(worker, []).extend(trials)
    return stopped


def _driver_holds_lock(app: Any, sweep_id: str) -> bool:
    """Whether a driver of the sweep lives: the consumer of its lock queue (sweep/driver/lock.py)."""
    with app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            _, _, consumers = channel.queue_declare(driver_lock.PREFIX + sweep_id, passive=True)
        except connection.channel_errors:  # no lock queue: no driver ever held it, or the sweep ended
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return bool(consumers)


def _end_driver(meta: dict[str, Any] | None, wait: float) -> str:
    if meta is None:
        return "a detached driver on the master stops within a few seconds"
    host, pid = meta.get("driver_host"), meta.get("driver_pid")
    if host != socket.gethostname() or not isinstance(pid, int):
        if is_embedded(meta):
            return f"its driver ran on {host}: stop it there (embedded mode cannot be reached from here)"
        return f"its driver on {host} stops within a few seconds"
    if pid == os.getpid():  # Ctrl-C of this very driver (cli_stop.offer_cancel): it has stopped already
        return "this driver stopped"
    if not driver_alive(pid):
        return "no driver was running"
    if is_embedded(meta):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # ends the sweep as Ctrl-C does: workers, trials, temporary files
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and driver_alive(pid):
        time.sleep(0.1)
    if driver_alive(pid):
        return f"its driver (pid {pid}) is still stopping"
    return f"its driver (pid {pid}) stopped"


def _record_cancelled(directory: Path) -> None:
    """sweep.json says cancelled (after the driver wrote its own end, so that this is the last word)."""
    path = directory / "sweep.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["status"] = "cancelled"
    meta["cancelled_at"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    _atomic_write(path, json.dumps(meta, indent=2, default=str) + "\n")
