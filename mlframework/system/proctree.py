"""Process trees: stop a trial's command and everything it started, however it was started.

A training command runs in a session (and process group) of its own and
carries a tag in its environment (``MLFRAMEWORK_TREE=<token>``), which every
process it starts inherits. The process running the command is made a child
subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so a background child whose
parent exits, even one that left the session (double fork, ``setsid``), is
re-parented to it instead of to PID 1, where it can be found and stopped.
A child that also cleared its environment (``env -i``, a daemon that resets
it) carries no tag: it is recognised as a child re-parented here that lives in
another session than this process's own (every command starts a session of
its own, and no process can join an existing session of another, so this
process's own helpers, such as ``nvidia-smi``, always share its session).

:func:`stop_group` is the one way a trial's processes are stopped (end of a
trial, a timeout, a pruned trial): SIGTERM to the group and to the tagged
processes it left behind, SIGKILL to what is left after a grace period.
:func:`kill_tagged` stops every process carrying a tag anywhere on the
machine (the embedded cluster's stop and its watchdog use it).

Linux only in full; elsewhere the process group alone is signalled.

Why not cgroups. A cgroup per trial would hold every process however it
escaped (``cgroup.kill`` on cgroup v2). It needs a writable cgroup v2
hierarchy: root's, or a subtree delegated to the user; unprivileged users and
the worker containers (an unprivileged user, a read-only /sys/fs/cgroup) have none.
The subreaper and the tag work in both and need no privilege; the limit they
share with any non-cgroup scheme: a process that is both untagged and handed
to another parent (``systemd-run``, ``ssh localhost``) is out of reach, and so
is an untagged one whose subreaper died before it was found (an embedded
driver's workers are therefore stopped, not killed, when the driver dies: see
``HELD_FOR_THE_WATCHDOG`` in :mod:`mlframework.cluster.embedded.workers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterable
from typing import NamedTuple

from mlframework import envvars

log = logging.getLogger(__name__)

TREE_ENV = envvars.TREE  # tag of one trial command's processes
_PR_SET_CHILD_SUBREAPER = 36
_POLL_SECONDS = 0.02


def new_tag() -> str:
    """A fresh tag for one process tree."""
    return secrets.token_hex(8)


@functools.cache
def _subreaper_in(pid: int) -> bool:
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux
        return False


def become_subreaper() -> bool:
    """Make this process the one orphaned descendants are re-parented to (once per process)."""
    return _subreaper_in(os.getpid())


def _environ_has(pid: int, needle: bytes) -> bool:
    """Whether the environment of ``pid`` holds the entry ``needle`` (``NAME=value\\0``)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            data = environ.read()
    except OSError:  # gone, a zombie, or not ours to read
        return False
    return data.startswith(needle) or b"\0" + needle in data


def _zombie(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] == b"Z"


def _parent_of(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


_ANY_TREE = f"{TREE_ENV}=".encode()


def _escaped_children(me: int) -> list[int]:
    """Children of ``me`` re-parented here from a command's tree that carry no tree tag (a cleared environment).

    A child in this process's own session is one of its own (a helper it ran), never a command's.
    """
    own = _stat(me)
    if own is None:
        return []
    found = []
    for pid in _pids():
        stat = _stat(pid)
        if stat is None or stat[1] != me or stat[3] == own[3] or stat[0] == b"Z":
            continue
        if not _environ_has_name(pid, _ANY_TREE):
            found.append(pid)
    return found


def _environ_has_name(pid: int, prefix: bytes) -> bool:
    """Whether ``pid``'s environment has a variable starting ``prefix`` (True when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            data = environ.read()
    except OSError:
        return True  # not ours to read: leave it alone
    return data.startswith(prefix) or b"\0" + prefix in data


def descendants(roots: Iterable[int]) -> set[int]:
    """Every live process below ``roots`` (by parent links in /proc), the roots excluded."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc
        return []


def tagged(env_name: str, tag: str, *, children_only: bool = False) -> list[int]:
    """Processes whose environment holds ``env_name=tag`` (only this process's children if asked)."""
    needle = f"{env_name}={tag}\0".encode()
    me = os.getpid()
    found = []
    for pid in _pids():
        if pid == me or (children_only and _parent_of(pid) != me):
            continue
        if _environ_has(pid, needle):
            found.append(pid)
    return found


def _signal_all(pids: Iterable[int], number: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, number)


def _reap(pids: Iterable[int]) -> set[int]:
    """Collect the exit status of those ``pids`` that are this process's children and have exited."""
    gone = set()
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours (or reaped already): gone once it is a zombie or no more
            if _zombie(pid):
                gone.add(pid)
            continue
        if done:
            gone.add(pid)
    return gone


def _stat(pid: int) -> tuple[bytes, int, int, int] | None:
    """State, parent, process group and session of ``pid`` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, ValueError, IndexError):
        return None


def _group_alive(pgid: int, leader_ours: bool) -> bool:
    """Whether a live process is left in group ``pgid``; zombies re-parented here are reaped on the way."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    me, alive = os.getpid(), False
    for pid in _pids():
        stat = _stat(pid)
        if stat is None or stat[2] != pgid:
            continue
        if stat[0] != b"Z":
            alive = True
        elif stat[1] == me and not (leader_ours and pid == pgid):
            # An exited child of the command's, re-parented here: its zombie keeps the group alive.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    return alive


def stop_group(
    pgid: int, tag: str | None = None, grace: float = 2.0, *, search: bool = True, leader_ours: bool = True
) -> None:
    """Kill the trial's process group with SIGTERM, then SIGKILL after ``grace`` seconds.

    With ``tag`` (and ``search``) the processes that left the group but carry
    the tag and were re-parented here (see :func:`become_subreaper`), and the
    untagged ones re-parented here from another session, are stopped the same
    way. Returns when all of them are gone (or, for processes that cannot be
    killed, after the SIGKILL round). ``leader_ours``:
    the group's leader is a child of this process whose exit status the caller
    collects (a ``Popen``); it is signalled, never reaped here.
    """
    strays: set[int] = set()

    def find() -> None:
        if tag is not None and search:
            strays.update(tagged(TREE_ENV, tag, children_only=True))
            strays.update(_escaped_children(os.getpid()))
            if leader_ours:
                strays.discard(pgid)

    find()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    _signal_all(strays, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        strays -= _reap(strays)
        if not strays and not _group_alive(pgid, leader_ours):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
        find()  # a stopped parent's children are re-parented here in turn
    log.info("process group %d still alive %.1fs after SIGTERM: SIGKILL", pgid, grace)
    for _ in range(50):  # what SIGKILL frees is re-parented here: a few rounds reach the leaves
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _signal_all(strays, signal.SIGKILL)
        time.sleep(_POLL_SECONDS)
        strays -= _reap(strays)
        find()
        if not strays and not _group_alive(pgid, leader_ours):
            return


class Held(NamedTuple):
    """What :func:`freeze` stopped, and the untagged processes below them (pid -> start time)."""

    stopped: set[int]
    untagged: dict[int, int]


def freeze(env_name: str, tag: str, *, whole: bool = False) -> Held:
    """Stop (SIGSTOP) the processes tagged ``env_name=tag`` where they are; find the untagged ones below them.

    Done only when a trial is running (a process that also carries a tree tag,
    :data:`TREE_ENV`), or always with ``whole``: then every tagged process, the
    workers included, is held, in rounds until no new one appears, so that no
    trial starts, forks or exits any more and a trial's child that cleared its
    environment (untagged, held by its worker as subreaper) stays where it can
    be found. Pass ``untagged`` to :func:`kill_tagged` as ``also``; it lets the
    held processes go on (SIGCONT) to die.
    """
    stopped: set[int] = set()
    for _ in range(20):
        marked = set(tagged(env_name, tag))
        if not (whole or stopped or any(_environ_has_name(pid, _ANY_TREE) for pid in marked)):
            break  # no trial running: nothing to hold
        fresh = marked - stopped
        if not fresh:
            break
        _signal_all(fresh, signal.SIGSTOP)
        stopped |= fresh
        time.sleep(_POLL_SECONDS)  # let the stops land and a fork under way show its child
    marked = set(tagged(env_name, tag))
    below = descendants(marked) - marked
    below.discard(os.getpid())
    return Held(stopped, {pid: start for pid in below if (start := _start_time(pid)) is not None})


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def kill_tagged(env_name: str, tag: str, grace: float = 2.0, also: dict[int, int] | None = None) -> int:
    """SIGTERM every process on this machine carrying ``env_name=tag``, SIGKILL those left after ``grace``.

    Returns how many were found. Used when a whole embedded cluster goes: its
    workers, their trials and whatever those started; the untagged processes
    below them too (found now, and given in ``also`` from :func:`freeze`,
    pid -> start time, when their parents may be gone). Stopped processes are
    let go on (SIGCONT) after the SIGTERM, so that it reaches them.
    """
    found = set(tagged(env_name, tag))
    found |= descendants(found)
    found |= {pid for pid, start in (also or {}).items() if _start_time(pid) == start}  # not a reused pid
    found.discard(os.getpid())
    if not found:
        return 0
    _signal_all(found, signal.SIGTERM)
    _signal_all(found, signal.SIGCONT)
    deadline = time.monotonic() + grace
    left = set(found)
    while left and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        left = (left - _reap(left)) | set(tagged(env_name, tag))
    for _ in range(50):
        if not left:
            break
        _signal_all(left, signal.SIGKILL)
        time.sleep(_POLL_SECONDS)
        left = (left - _reap(left)) | set(tagged(env_name, tag))
    return len(found)
