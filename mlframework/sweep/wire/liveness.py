"""Whether a sweep is live: workers run the trials of live sweeps only, and drop those of ended ones.

The mark of a live sweep is a durable, empty queue on the broker,
``mlframework.live.<sweep-id>.<epoch>``, that the driver declares when it
starts (:func:`mark_live`) and deletes when the sweep ends (:func:`end_sweep`,
reason ``finished``; a ``mlframework cancel`` command calls it with reason
``cancelled``). Every trial message carries its sweep's id and the epoch it
was sent in (``trial["epoch"]``, see :func:`stamp`). Before running a message,
a worker asks the broker whether that mark exists (a passive queue declare:
one round trip, no state kept on the broker beyond the queue, cached in the
worker process for :data:`LIVE_CACHE_SECONDS`; an ended epoch is cached for
good, as it never comes back). A message of a sweep that is finished,
cancelled or unknown (no such mark: e.g. a leftover of a sweep whose broker
data was kept, or another project's) is acknowledged and dropped with one log
line; it never runs.

Why an epoch. A cancelled sweep stays resumable: ``--resume`` makes it live
again. Copies of its old trial messages may still wait in the trial queue
then; if the mark were just the sweep id, they would run alongside the copies
the resumed driver sends. So a resume after an end starts a new epoch
(:func:`next_epoch`): the old epoch's mark stays deleted, its messages keep
being dropped, and the resumed driver sends every unrecorded trial again in the
new epoch. A resume after a driver *crash* (the sweep never ended) keeps the
epoch: the trials that driver sent are still valid and are awaited, not sent
twice. The epoch is recorded in ``sweep.json`` (``"epoch"``).

Costs: one passive declare per trial message (a batch message is one check),
never per output line. In embedded mode (kombu's filesystem transport) every
queue "exists" to a passive declare, so every sweep counts as live: its broker
lives and dies with the driver, and leftovers have nowhere to come from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "mlframework.live."
#: Seconds a worker process trusts "live" before asking again (an ended sweep drops its trials after at most this).
LIVE_CACHE_SECONDS = 5.0
#: Why a sweep ends (the ``reason`` of :func:`end_sweep`), as recorded in sweep.json's status.
REASONS = ("finished", "cancelled")


def marker_name(sweep_id: str, epoch: int) -> str:
    """The queue whose existence says that ``epoch`` of ``sweep_id`` is live."""
    return f"{PREFIX}{sweep_id}.{epoch}"


def next_epoch(meta: dict[str, Any]) -> int:
    """The epoch a driver of the sweep recorded in ``meta`` (sweep.json) runs in.

    The recorded one after a crash or an interruption; the next one after the
    sweep ended (finished or cancelled), whose old messages must stay dead.
    """
    epoch = int(meta.get("epoch") or 0)
    return epoch + 1 if meta.get("status") in REASONS else epoch


def stamp(trial: dict[str, Any], epoch: int) -> dict[str, Any]:
    """``trial`` (a message's trial dict) with the epoch it is sent in."""
    trial["epoch"] = epoch
    return trial


def mark_live(connection: Any, sweep_id: str, epoch: int) -> None:
    """Declare the sweep's live mark (idempotent); ``connection`` is a kombu connection."""
    channel = connection.channel()
    try:
        channel.queue_declare(marker_name(sweep_id, epoch), durable=True, auto_delete=False)
    finally:
        channel.close()
    log.info("sweep %s is live (epoch %d)", sweep_id, epoch)


def end_sweep(connection: Any, sweep_id: str, epoch: int, reason: str = "finished") -> None:
    """Mark ``epoch`` of the sweep ended: from now on workers drop its trials without running them.

    ``reason`` is ``finished`` or ``cancelled`` (only logged here; the caller
    records it in sweep.json as the status, which :func:`next_epoch` reads).
    """
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {REASONS}, not {reason!r}")
    channel = connection.channel()
    try:
        channel.queue_delete(marker_name(sweep_id, epoch))
    finally:
        channel.close()
    with _lock:
        _cache[(sweep_id, epoch)] = (False, float("inf"))
    log.info("sweep %s %s (epoch %d): its queued trials will be dropped", sweep_id, reason, epoch)


# (sweep, epoch) -> (live, until when that answer holds); per worker process.
_cache: dict[tuple[str, int], tuple[bool, float]] = {}
_lock = threading.Lock()


def is_live(app: Any, sweep_id: str, epoch: int) -> bool:
    """Whether ``epoch`` of the sweep is live, as the broker of the Celery ``app`` says (cached)."""
    key = (sweep_id, epoch)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
    if cached is not None and now < cached[1]:
        return cached[0]
    with app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            channel.queue_declare(marker_name(sweep_id, epoch), passive=True)
            live = True
        except connection.channel_errors:  # NOT_FOUND (404): no such mark; the channel is closed by it
            live = False
        finally:
            try:
                channel.close()
            except connection.connection_errors + connection.channel_errors:
                pass
    with _lock:
        _cache[key] = (live, now + LIVE_CACHE_SECONDS if live else float("inf"))
    return live


def trial_epoch(trial: Mapping[str, Any]) -> int:
    """The epoch a message's trial was sent in (0 for messages of drivers before epochs)."""
    try:
        return int(trial.get("epoch") or 0)
    except (TypeError, ValueError):
        return 0
