"""How a trial's outcome shows in Celery: the task of a trial that did not succeed ends FAILURE.

The driver records trials from the sweep's event queue, never from Celery
results, so a trial task could return normally whatever happened to its trial.
Flower and ``celery events`` would then show a green SUCCESS for a script that
exited 1. The task therefore raises :class:`TrialNotSucceeded` after the
trial's record was published:

* Celery marks the task FAILURE (``task-failed`` event, result state);
* the message is acknowledged, not redelivered: ``task_acks_late`` acknowledges
  a failed task when ``task_acks_on_failure_or_timeout`` is on (pinned in
  :func:`mlframework.sweep.wire.app.sweep_defaults`), and a leased message was
  acknowledged already (Celery acknowledges a request once);
* nothing retries it: the trial tasks have no ``autoretry_for``, and the
  exception is in their ``throws``, so the worker logs it on one line without
  a traceback and goes on with the next message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlframework.statuses import SUCCESS


class TrialNotSucceeded(Exception):
    """The trial(s) of a task message finished without success (FAILURE, PRUNED, ...)."""


def raise_unless_succeeded(records: Iterable[Mapping[str, Any]]) -> None:
    """Raise :class:`TrialNotSucceeded` naming each record whose status is not SUCCESS."""
    bad = [record for record in records if record.get("status") != SUCCESS]
    if not bad:
        return
    parts = []
    for record in bad[:10]:
        error = record.get("error")
        parts.append(f"{record.get('trial')} {record.get('status')}" + (f" ({error})" if error else ""))
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    raise TrialNotSucceeded("; ".join(parts) + more)
