"""A GPU's trial slots on its host, across every project: lock files that a trial's worker holds while it runs.

Every worker container of every cluster on a host mounts the same directory
(``/var/lib/mlframework/gpus`` on the host, :data:`HOST_DIR`). Per GPU of the
host there is a lock file, ``<dir>/<host>/gpu<N>.lock``, and, for trials packed
N to a GPU (``--trials-per-gpu N``), slot files ``gpu<N>.slot<s>.lock``:

- a trial alone on its GPU (N = 1) holds ``gpu<N>.lock`` exclusively;
- a packed trial holds ``gpu<N>.lock`` shared and one slot file exclusively,
  so at most N packed trials run together, never next to a trial alone;
- trials that wait take the GPU in the order they began to wait (:class:`_Turn`).

The locks are ``fcntl.flock`` locks of the worker process that runs the trial:
the kernel releases them when the trial ends or when the process dies, however
it dies. The file a trial holds exclusively contains its holder as JSON
(project, sweep, trial, since, pid, host, gpu): what ``mlframework status``
shows; a file whose lock is free says nothing, whatever it contains.

Standard library only, with no import from mlframework: ``status`` sends this
module's source to the hosts over SSH and runs :func:`holders` there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

#: The lock directory on every host (bind-mounted at the same path in GPU worker containers).
HOST_DIR = "/var/lib/mlframework/gpus"
#: Seconds between two tries while the GPU is taken.
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Holder:
    """Who runs a trial on a GPU slot now: the JSON in the lock file it holds."""

    project: str  # the cluster name of the worker's project
    sweep: str
    trial: str
    since: str  # UTC, ISO 8601
    pid: int  # the worker process that holds the lock
    host: str
    gpu: str  # the host's GPU index
    slot: int | None = None  # the packed slot (--trials-per-gpu > 1); None for a trial alone on its GPU

    def describe(self) -> str:
        """``project X sweep Y trial Z since ...``."""
        return f"project {self.project} sweep {self.sweep} trial {self.trial} since {self.since}"


def _lock_path(directory: str, host: str, gpu: str, slot: int | None = None) -> str:
    name = f"gpu{gpu}.lock" if slot is None else f"gpu{gpu}.slot{slot}.lock"
    return os.path.join(directory, host, name)


def _open(path: str) -> int:
    """The lock file, created writable by every project's workers (their users may differ)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(OSError):  # someone else's directory: theirs to keep open
        os.chmod(os.path.dirname(path), 0o1777)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    with contextlib.suppress(OSError):  # the umask took bits away; not ours to change if another user made it
        os.fchmod(fd, 0o666)
    return fd


def _try(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _read(fd: int) -> Holder | None:
    try:
        data = json.loads(os.pread(fd, 65536, 0).decode() or "null")
        return Holder(**data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def _write(fd: int, holder: Holder) -> None:
    data = json.dumps(asdict(holder)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


class GpuSlot:
    """The lock(s) one trial holds on one GPU of its host; :meth:`release` or process death frees them."""

    def __init__(self, fds: list[int], holder: Holder) -> None:
        self._fds = fds
        self.holder = holder

    def release(self) -> None:
        """Free the GPU (slot): the holder JSON is cleared first, then the locks are dropped."""
        if not self._fds:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fds[-1], 0)
        for fd in reversed(self._fds):
            os.close(fd)  # closing the last descriptor releases its flock
        self._fds = []


def _attempt(directory: str, holder: Holder, per_gpu: int) -> tuple[GpuSlot | None, list[Holder]]:
    """One try for a slot of ``holder.gpu``; (slot, []) or (None, who holds the GPU now)."""
    main = _open(_lock_path(directory, holder.host, holder.gpu))
    if per_gpu <= 1:
        if _try(main, fcntl.LOCK_EX):
            stamped = Holder(**{**asdict(holder), "since": _now()})
            _write(main, stamped)
            return GpuSlot([main], stamped), []
        os.close(main)
        return None, holders_of(directory, holder.host, holder.gpu)
    if not _try(main, fcntl.LOCK_SH):
        os.close(main)
        return None, holders_of(directory, holder.host, holder.gpu)
    for slot in range(per_gpu):
        fd = _open(_lock_path(directory, holder.host, holder.gpu, slot))
        if _try(fd, fcntl.LOCK_EX):
            stamped = Holder(**{**asdict(holder), "since": _now(), "slot": slot})
            _write(fd, stamped)
            return GpuSlot([main, fd], stamped), []
        os.close(fd)
    os.close(main)
    return None, holders_of(directory, holder.host, holder.gpu)


class _Turn:
    """A trial's place in the line for one GPU: a file ``gpu<N>.wait.<time_ns>.<pid>``, locked while it waits.

    Trials take the GPU in the order they began to wait: without the line, a worker that has just freed the
    GPU would take it again for its next trial before a waiting one looks (they poll), again and again. A
    waiter that died leaves its file unlocked, and an unlocked file holds no place.
    """

    def __init__(self, directory: str, host: str, gpu: str) -> None:
        self.directory = os.path.join(directory, host)
        self.prefix = f"gpu{gpu}.wait."
        self.key = (time.time_ns(), os.getpid())
        self.path = os.path.join(self.directory, f"{self.prefix}{self.key[0]}.{self.key[1]}")
        self.fd = _open(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def first(self) -> bool:
        """Whether no live waiter began to wait before this one."""
        for name in os.listdir(self.directory):
            if not name.startswith(self.prefix):
                continue
            try:
                key = tuple(int(part) for part in name[len(self.prefix) :].split("."))
            except ValueError:
                continue
            if key >= self.key:
                continue
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(os.path.join(self.directory, name), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if not _try(fd, fcntl.LOCK_SH):
                        return False  # an earlier waiter, alive
                finally:
                    os.close(fd)
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)


def acquire(
    directory: str,
    holder: Holder,
    per_gpu: int = 1,
    *,
    waiting: Callable[[list[Holder]], None] = lambda held: None,
    stopped: Callable[[], bool] = lambda: False,
    poll: float = POLL_SECONDS,
) -> GpuSlot | None:
    """Wait for a slot of ``holder.gpu`` on ``holder.host``, in turn; None if ``stopped()`` turns true first.

    ``waiting(holders)`` is called once when the GPU is taken, with who holds it.
    """
    told = False
    turn = _Turn(directory, holder.host, holder.gpu)
    try:
        while True:
            if turn.first():
                slot, held = _attempt(directory, holder, per_gpu)
                if slot is not None:
                    return slot
            else:
                held = holders_of(directory, holder.host, holder.gpu)
            if not told:
                waiting(held)
                told = True
            if stopped():
                return None
            time.sleep(poll)
    finally:
        turn.close()


def holders_of(directory: str, host: str, gpu: str) -> list[Holder]:
    """Who holds GPU ``gpu`` of ``host`` now (empty when it is free); files are only read and tested."""
    found = []
    main_path = _lock_path(directory, host, gpu)
    if not os.path.exists(main_path):
        return []
    main = os.open(main_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if not _try(main, fcntl.LOCK_SH):  # held exclusively: a trial alone on the GPU
            holder = _read(main)
            return [holder or Holder("?", "?", "?", "?", 0, host, gpu)]
        fcntl.flock(main, fcntl.LOCK_UN)
    finally:
        os.close(main)
    prefix = f"gpu{gpu}.slot"
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(os.path.join(directory, host))):
            if not (name.startswith(prefix) and name.endswith(".lock")):
                continue
            fd = os.open(os.path.join(directory, host, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _try(fd, fcntl.LOCK_EX):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                else:
                    holder = _read(fd)
                    found.append(holder or Holder("?", "?", "?", "?", 0, host, gpu))
            finally:
                os.close(fd)
    return found


def holders(directory: str, host: str) -> dict[str, list[dict[str, Any]]]:
    """Every GPU of ``host`` that has a lock file: GPU index -> its holders as dicts (empty: free)."""
    gpus = set()
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(os.path.join(directory, host)):
            if name.startswith("gpu") and name.endswith(".lock"):
                gpus.add(name[3:].split(".", 1)[0])
    return {gpu: [asdict(h) for h in holders_of(directory, host, gpu)] for gpu in sorted(gpus, key=_index)}


def waiters(directory: str, host: str) -> dict[str, int]:
    """How many trials wait for each GPU of ``host`` now (their places in line whose lock is held)."""
    counts: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(os.path.join(directory, host)):
            gpu, dot, _ = name[3:].partition(".wait.")
            if not (name.startswith("gpu") and dot):
                continue
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(os.path.join(directory, host, name), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if not _try(fd, fcntl.LOCK_SH):
                        counts[gpu] = counts.get(gpu, 0) + 1
                finally:
                    os.close(fd)
    return counts


def _index(gpu: str) -> tuple[int, str]:
    return (int(gpu), gpu) if gpu.isdigit() else (1 << 30, gpu)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
