"""Child processes that die with the process that started them (Linux's ``PR_SET_PDEATHSIG``).

Without it, a worker killed mid-trial (the OOM killer, ``docker kill``) would
leave its training process running on the GPU while the trial is re-queued,
and a driver killed with SIGKILL would leave its embedded workers running with
nobody to stop them. Elsewhere than on Linux these are best effort: nothing.

Linux counts the *thread* that forked as the parent: start such children from
a thread that lives as long as they should.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (a ``preexec_fn``)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):  # no libc to load: best effort only
        pass


def own_session(parent_death_signal: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: a session of its own (a signal reaches its group), ``parent_death_signal`` at parent death.

    SIGKILL, not a warm shutdown: a worker must not go on starting trials nobody
    collects. SIGSTOP where a watchdog outlives the parent: the worker is held
    still (no trial starts) while its pool processes, the subreapers of its
    trials' escaped children, stay alive until the watchdog has found and
    stopped everything below them (see :mod:`mlframework.cluster.embedded.watchdog`).
    """

    def start() -> None:
        os.setsid()
        die_with_parent(parent_death_signal)

    return start


@functools.cache
def pdeathsig_launcher() -> list[str] | None:
    """``setpriv --pdeathsig KILL --`` (util-linux), when this machine has it: a prefix for a command line.

    It does what :func:`die_with_parent` does, from a program: a ``preexec_fn``
    makes Python fork the whole worker process (tens of megabytes of page
    tables) instead of vfork, about 10 ms per command here against 1 ms for
    the extra exec.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    try:
        usage = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [setpriv, "--pdeathsig", "KILL", "--"] if "--pdeathsig" in usage else None
