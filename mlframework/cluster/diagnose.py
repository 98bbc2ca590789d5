"""What a failed cluster step shows: an unexpected error's traceback kept in a log file, containers' last lines.

A host fault that is not one of ours (a paramiko or docker SDK exception in
the middle of a step) becomes one line naming the host, the step and the
error, plus the path of the log file that holds its traceback
(:func:`record_unexpected`); the user never sees a raw traceback for it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from mlframework.envvars import ERROR_LOG

log = logging.getLogger(__name__)

#: Lines of a container's log shown when it failed to start.
TAIL_LINES = 15

_lock = threading.Lock()


def error_log_path() -> Path:
    """Where tracebacks of unexpected host errors go: ``$MLFRAMEWORK_ERROR_LOG``, else a per-user file in /tmp."""
    given = os.environ.get(ERROR_LOG)
    if given:
        return Path(given)
    return Path(tempfile.gettempdir()) / f"mlframework-{os.getuid()}" / "cluster-errors.log"


def record_unexpected(host: str, step: str, error: BaseException) -> str:
    """Append ``error``'s traceback to the error log; returns the one-line reason naming step, error and log."""
    path = error_log_path()
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        with _lock:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as out:
                out.write(f"--- {stamp} {host}: {step}\n{text}\n")
        where = f"traceback in {path}"
    except OSError as exc:  # the error itself must still reach the user
        log.debug("cannot write %s", path, exc_info=True)
        where = f"traceback not kept: {exc.strerror}"
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{host}: {step}: {type(error).__name__}{': ' + first if first else ''} ({where})"


def container_tail(container: Any, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a container's log, indented (empty if it cannot be read)."""
    try:
        text = container.logs(tail=lines).decode(errors="replace").rstrip()
    except Exception:  # a container that is gone has no log: the caller's error stands alone
        log.debug("cannot read the log of %s", getattr(container, "name", "?"), exc_info=True)
        return ""
    return "\n".join(f"    {line}" for line in text.splitlines())
