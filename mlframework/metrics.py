"""Report metrics from a training script without importing Celery.

Usage inside a training script::

    from mlframework import metrics
    for epoch in range(epochs):
        ...
        metrics.log(step=epoch, loss=loss, accuracy=acc)

When the script runs as a trial, the runner names a file in the environment
variable ``MLFRAMEWORK_METRICS_FILE`` and every call appends one JSON line to
it; the last value of each metric becomes the trial's final value, and every
call is kept as its history. Run by hand (variable unset), :func:`log` does
nothing, so the same script works with and without the framework.

This module deliberately uses the standard library only: it is imported by
training scripts in whatever environment they run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from typing import Any

# mlframework.envvars imports nothing: this module stays standard library only.
from mlframework.envvars import METRICS_FILE as ENV_VAR
from mlframework.envvars import STOP_FILE as STOP_ENV_VAR  # created when the sweep stops the trial

_stop_requested = False


def should_stop() -> bool:
    """Whether the sweep asks this trial to stop (a search pruned it): save a checkpoint and exit.

    The first call makes SIGTERM (which the sweep sends) set this flag instead of
    ending the script at once; the sweep sends SIGKILL after its grace period
    (10 s). A script that never calls it is simply ended by the SIGTERM. False
    when the script is not run by mlframework.
    """
    global _stop_requested
    if threading.current_thread() is threading.main_thread() and not getattr(should_stop, "_installed", False):
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
            should_stop._installed = True  # type: ignore[attr-defined]
        except ValueError:  # not the main thread of the interpreter
            pass
    stop_file = os.environ.get(STOP_ENV_VAR)
    return _stop_requested or bool(stop_file and os.path.exists(stop_file))


def _on_sigterm(signum: int, frame: Any) -> None:
    global _stop_requested
    _stop_requested = True


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars into plain numbers JSON can hold."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    item = getattr(value, "item", None)
    if callable(item):
        return _plain(item())
    try:
        return _plain(float(value))
    except (TypeError, ValueError):
        return str(value)


def log(step: int | None = None, **values: Any) -> None:
    """Record metric values, optionally at a training step (epoch, iteration).

    A no-op when the script is not run by mlframework.
    """
    path = os.environ.get(ENV_VAR)
    if not path or not values:
        return
    record = {"time": time.time(), "step": step, "values": {k: _plain(v) for k, v in values.items()}}
    # One write of one line in append mode: lines from one process never interleave.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a metrics file: ``(final values, history records)``.

    Lines that are not valid JSON records (a script killed mid-write) are skipped.
    """
    final: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    values = record["values"]
                except (ValueError, KeyError, TypeError):
                    continue
                if not isinstance(values, dict):
                    continue
                history.append(record)
                final.update(values)
    except FileNotFoundError:
        pass
    return final, history
