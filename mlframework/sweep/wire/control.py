"""Stop running trials on whatever host runs them: a broadcast every worker's main process acts on.

:func:`stop_trials` (the driver, ``mlframework cancel``) broadcasts
``mlframework_stop_trials``; each worker looks the trials up in its registry of
running trial commands (one small file per trial, written when the command
starts, removed when it ends), creates the trial's stop file (what
:func:`mlframework.metrics.should_stop` looks at), sends SIGTERM to the
command's process group and SIGKILL after ``grace`` seconds if it is still
there. A worker that runs none of them does nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery.worker.control import control_command

from mlframework import envvars
from mlframework.system.fileio import write_text_atomic

log = logging.getLogger(__name__)

COMMAND = "mlframework_stop_trials"
ENV_STOP_FILE = envvars.STOP_FILE  # mlframework.metrics reads it (standard library only there)
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def registry_dir(worker: str) -> Path:
    """The directory of worker node ``worker``'s running trials (private to this machine's user)."""
    return Path(tempfile.gettempdir()) / f"mlframework-running-{os.getuid()}" / _SAFE.sub("_", worker or "worker")


def _entry(worker: str, sweep_id: str, trial: str) -> Path:
    return registry_dir(worker) / f"{_SAFE.sub('_', sweep_id)}.{_SAFE.sub('_', trial)}"


class Registration:
    """One running trial command in its worker's registry (see :func:`registered`)."""

    def __init__(self, worker: str, sweep_id: str, trial: str) -> None:
        self.path = _entry(worker, sweep_id, trial)
        self.stop_file = self.path.with_name(self.path.name + ".stop")
        self.env = {ENV_STOP_FILE: str(self.stop_file)}

    def started(self, pid: int) -> None:
        """The command runs as process ``pid``: stoppable from now on."""
        # Not durable: the entry means nothing after a reboot.
        write_text_atomic(self.path, json.dumps({"pid": pid, "stop_file": str(self.stop_file)}), durable=False)

    @property
    def stop_request(self) -> dict[str, Any] | None:
        """Why and when the trial was asked to stop (``reason``, ``latency_s`` from decision to signal), or None."""
        try:
            text = self.stop_file.read_text(encoding="utf-8")
        except OSError:
            return None
        try:
            request = json.loads(text)
        except ValueError:
            return {"reason": text.strip() or "stopped"}
        return request if isinstance(request, dict) else {"reason": "stopped"}


@contextlib.contextmanager
def registered(worker: str, sweep_id: str, trial: str) -> Iterator[Registration]:
    """Register a trial command for the time it runs (its pid comes through ``Registration.started``)."""
    registration = Registration(worker, sweep_id, trial)
    registration.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    registration.stop_file.unlink(missing_ok=True)
    try:
        yield registration
    finally:
        registration.path.unlink(missing_ok=True)
        registration.stop_file.unlink(missing_ok=True)


def _signal(pid: int, signum: int) -> bool:
    """Signal the process group of ``pid`` when it leads one, else the process; False when it is gone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def stop_local(
    worker: str,
    sweep_id: str,
    trials: list[str] | None,
    reason: str,
    grace: float,
    decided_at: float | None = None,
) -> list[str]:
    """Stop the registered trials of ``sweep_id`` (all of them when ``trials`` is None) on this machine.

    SIGTERM now, SIGKILL after ``grace`` seconds; returns the trials signalled.
    ``decided_at`` (the caller's ``time.time()``) gives the latency recorded with the trial.
    """
    directory = registry_dir(worker)
    prefix = _SAFE.sub("_", sweep_id) + "."
    wanted = None if trials is None else {_SAFE.sub("_", t) for t in trials}
    stopped = []
    for path in directory.glob(prefix + "*") if directory.is_dir() else []:
        name = path.name[len(prefix) :]
        if "." in name or (wanted is not None and name not in wanted):
            continue  # a .stop or .tmp file, or another trial
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            pid = int(entry["pid"])
            latency = None if decided_at is None else round(max(0.0, time.time() - decided_at), 6)
            request = {"reason": reason, "latency_s": latency}
            Path(entry["stop_file"]).write_text(json.dumps(request), encoding="utf-8")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # the trial ended meanwhile
        if _signal(pid, signal.SIGTERM):
            stopped.append(name)
            timer = threading.Timer(grace, _signal, args=(pid, signal.SIGKILL))
            timer.daemon = True
            timer.start()
    if stopped:
        log.warning("stopped %s of sweep %s (%s)", ", ".join(stopped), sweep_id, reason)
    return stopped


@control_command(  # type: ignore[untyped-decorator]  # celery ships no type information
    name=COMMAND,
    args=[("sweep_id", str), ("trials", list), ("reason", str), ("grace", float), ("decided_at", float)],
    signature="<sweep_id> [trials] [reason] [grace] [decided_at]",
)
def _stop_command(
    state: Any,
    sweep_id: str,
    trials: list[str] | None = None,
    reason: str = "stopped",
    grace: float = 10.0,
    decided_at: float | None = None,
) -> dict[str, Any]:
    """Worker side of :func:`stop_trials` (runs in the worker's main process)."""
    return {"ok": stop_local(state.consumer.hostname, sweep_id, trials, reason, grace, decided_at)}


def stop_trials(
    app: Any,
    sweep_id: str,
    trials: list[str] | None,
    reason: str,
    grace: float = 10.0,
    *,
    reply: bool = False,
    timeout: float = 1.0,
) -> dict[str, list[str]]:
    """Ask every worker to stop trials of ``sweep_id`` (all when ``trials`` is None) where they run.

    Returns, with ``reply``, the trials each worker stopped (waiting up to
    ``timeout``); without, returns at once (the pruning path).
    """
    arguments = {"sweep_id": sweep_id, "trials": trials, "reason": reason, "grace": grace, "decided_at": time.time()}
    replies = app.control.broadcast(COMMAND, arguments=arguments, reply=reply, timeout=timeout) or []
    result: dict[str, list[str]] = {}
    for answer in replies:
        for worker, body in (answer or {}).items():
            result[worker] = list((body or {}).get("ok") or [])
    return result
