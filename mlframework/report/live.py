"""Keeps ``results/<id>/report.html`` current while a sweep runs (a browser refresh shows progress).

:class:`LiveReportObserver` watches a sweep as the console does (the CLI gives both to the driver) and
calls :meth:`LiveReport.tick` while the driver waits; a render is ``mlframework report`` in a
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
from mlframework.sweep.driver.spec import SweepObserver, SweepOutcome
from mlframework.sweep.records.record import TrialRecord
from mlframework.system.fileio import temporary_files

log = logging.getLogger(__name__)

ENV_SWITCH = envvars.LIVE_REPORT
EXIT_USAGE = 2  # the report command's status for a missing library: no point in trying again
STOP_WAIT = 0.5  # seconds a render stopped by an interrupt gets to exit on SIGTERM before SIGKILL


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

    def _stop_child(self, wait: float) -> None:
        """Stop a render that still runs (SIGTERM, SIGKILL after ``wait`` s) and remove its partial file."""
        child, self._child = self._child, None
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for partial in temporary_files(self.directory / "report.html", child.pid):
            partial.unlink(missing_ok=True)

    def finish(self) -> None:
        """The sweep ended: one last render of the final state (a stale one still running is stopped)."""
        if not self.enabled:
            return
        try:
            self._stop_child(wait=2)
            self._start(-2)
        except Exception:
            log.warning("the final report could not be started", exc_info=True)

    def stop(self) -> None:
        """The command is being stopped (Ctrl-C): stop a running render and start none (``mlframework report`` can)."""
        try:
            self._stop_child(wait=STOP_WAIT)
        except Exception:
            log.warning("the live report's render could not be stopped", exc_info=True)


class LiveReportObserver(SweepObserver):
    """The live report as an observer of the sweep: renders now and then as trials are recorded, once at the end.

    On a normal end (every trial recorded, or a cancel the driver heard of) the final state is rendered;
    when the driver itself is stopped (Ctrl-C, SIGTERM) a render in progress is stopped and none started.
    """

    def __init__(self, min_interval: float = 5.0, share: float = 0.25) -> None:
        self.min_interval = min_interval
        self.share = share
        self.report: LiveReport | None = None
        self.recorded = 0  # trials recorded in this session

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        self.report = LiveReport(directory, self.min_interval, self.share)

    def trial_finished(self, record: TrialRecord) -> None:
        self.recorded += 1

    def idle(self) -> None:
        if self.report is not None:
            self.report.tick(self.recorded)

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        report, self.report = self.report, None
        if report is None:
            return
        if outcome.signalled:
            report.stop()
        else:
            report.finish()
