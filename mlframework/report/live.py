"""Keeps ``results/<id>/report.html`` current while a sweep runs (a browser refresh shows progress).

The driver calls :meth:`LiveReport.tick` from its loop; a render is ``mlframework report`` in a
child process at low priority, never in the driver: the driver's loop stays as fast as without it,
and a render that fails (a missing plotting library, a bug) only logs. A render starts at most
every :attr:`LiveReport.min_interval` seconds, only when trials were recorded since the last one,
and never while the previous one still runs; the interval grows to a few times what a render
takes, so a big sweep's report costs a bounded share of one core. ``MLFRAMEWORK_LIVE_REPORT=0``
turns it off.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mlframework import envvars
from mlframework.system.fileio import temporary_files

log = logging.getLogger(__name__)

ENV_SWITCH = envvars.LIVE_REPORT
EXIT_USAGE = 2  # the report command's status for a missing library: no point in trying again


class LiveReport:
    """Renders a running sweep's report now and then, in a child process."""

    def __init__(self, directory: Path, min_interval: float = 5.0, share: float = 0.25) -> None:
        self.directory = directory
        self.min_interval = min_interval
        self.share = share  # at most this fraction of the wall time is spent rendering
        self.enabled = os.environ.get(ENV_SWITCH, "1").lower() not in ("0", "false", "no", "off")
        self._child: subprocess.Popen[bytes] | None = None
        self._child_started = 0.0
        # The first render waits min_interval: a sweep shorter than that only gets the final one.
        self._next = time.monotonic() + min_interval
        self._rendered = -1  # trials recorded at the last render

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "mlframework", "report", self.directory.name]
        command += ["--results", str(self.directory.parent)]
        nice = shutil.which("nice")
        return [nice, "-n", "10", *command] if nice else command

    def _reap(self) -> bool:
        """True when no render runs now (the last one finished and was accounted for)."""
        child = self._child
        if child is None:
            return True
        code = child.poll()
        if code is None:
            return False
        took = time.monotonic() - self._child_started
        self._child = None
        self._next = time.monotonic() + max(self.min_interval, took / self.share)
        if code == EXIT_USAGE:
            log.info("live report off: `mlframework report` exited %d (pip install 'mlframework[report]')", code)
            self.enabled = False
        elif code != 0:
            log.warning("the live report failed (exit %d); run `mlframework report %s`", code, self.directory.name)
        return True

    def _start(self, recorded: int) -> None:
        try:
            self._child = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C on the sweep does not cut a render short
                env={**os.environ, ENV_SWITCH: "0"},
            )
        except OSError as exc:
            log.warning("live report off: cannot start a render: %s", exc)
            self.enabled = False
            return
        self._child_started = time.monotonic()
        self._rendered = recorded

    def tick(self, recorded: int) -> None:
        """Start a render when one is due (cheap: a clock check most of the time)."""
        if not self.enabled or recorded == self._rendered or time.monotonic() < self._next:
            return
        try:
            if self._reap() and recorded > 0:
                self._start(recorded)
        except Exception:  # a report must never break a sweep
            log.warning("live report off after an error", exc_info=True)
            self.enabled = False

    def finish(self) -> None:
        """The sweep ended: one last render of the final state (a stale one still running is stopped)."""
        if not self.enabled:
            return
        try:
            stale = self._child
            if stale is not None and stale.poll() is None:
                stale.terminate()
                try:
                    stale.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    stale.kill()
                for partial in temporary_files(self.directory / "report.html", stale.pid):
                    partial.unlink(missing_ok=True)
            self._start(-2)
        except Exception:
            log.warning("the final report could not be started", exc_info=True)
