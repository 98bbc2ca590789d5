"""Ctrl-C of a `sweep` on a broker asks once: cancel the trials there, or leave them running for --resume.

Real RabbitMQ (a vhost per test) and a real Celery worker; the sweep runs in a pseudo-terminal that is its
controlling terminal, so that Ctrl-C is the terminal's ^C (SIGINT to its process group) and the answer is
typed as a user would. Without a terminal nothing is asked and the trials are left running, as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

from scratch_projects import wait_for_records
from test_cancel import mlframework, records, slow_project, starts

TRIALS = 8


def _controlling_terminal() -> None:  # in the child, after setsid (start_new_session): fd 0 is the pty
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``mlframework sweep ARGS`` on a pseudo-terminal: what it printed, and keys to type into it."""

    def __init__(self, cwd: Path, url: str, *args: str) -> None:
        self.master, slave = os.openpty()
        env = {**os.environ, "COLUMNS": "200", "MLFRAMEWORK_BROKER_URL": url, "MLFRAMEWORK_LIVE_REPORT": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlframework", "sweep", *args],
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        self.output = ""

    def read_until(self, text: str, timeout: float) -> str:
        """Everything printed so far, once ``text`` is in it (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not printed within {timeout:g}s:\n{self.output}"
            if not self._read(min(left, 0.5)):
                assert self.process.poll() is None, f"exited {self.process.returncode} first:\n{self.output}"
        return self.output

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the other side is closed
            return False
        self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
        return bool(chunk)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.1):
            pass
        if self.process.poll() is None:
            self.process.kill()
            raise AssertionError(f"still running after {timeout:g}s:\n{self.output}")
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        os.close(self.master)


def _sweep_on_a_terminal(tmp_path: Path, url: str) -> tuple[Terminal, Path]:
    """The sweep running on a terminal, two trials recorded, then ^C typed and the question printed."""
    terminal = Terminal(tmp_path, url, str(tmp_path / "proj"), "--results", "res", "--max-batch", "1", "-q")
    sweep_dir = wait_for_records(tmp_path / "res", 2, timeout=120)
    terminal.type(b"\x03")  # Ctrl-C, as the terminal sends it: SIGINT to the sweep's process group
    terminal.read_until("on the cluster? (no: they keep running for --resume) [y/N]", timeout=60)
    return terminal, sweep_dir


def test_ctrl_c_then_yes_cancels_the_trials_on_the_broker_and_resume_finishes(tmp_path, vhost_url):
    from mlframework.cluster.embedded.workers import LocalWorker
    from mlframework.sweep.wire.app import BrokerSettings

    project = slow_project(tmp_path / "proj", trials=TRIALS, sleep=2.0)
    with LocalWorker(BrokerSettings(vhost_url), project, 2, tmp_path / "worker.log", node_name="w@%h"):
        terminal, sweep_dir = _sweep_on_a_terminal(tmp_path, vhost_url)
        try:
            output = terminal.read_until("[y/N]", timeout=5)
            assert output.count("[y/N]") == 1, output  # asked once
            assert f"resume it: mlframework sweep --resume {sweep_dir.name}" in output, output
            terminal.type(b"y\n")
            status = terminal.wait(timeout=60)
            answered_at = time.time()
        finally:
            terminal.close()
        assert status == 130, terminal.output  # 128 + SIGINT, as before
        assert f"cancelled sweep {sweep_dir.name}:" in terminal.output, terminal.output
        assert "Traceback" not in terminal.output, terminal.output
        meta = json.loads((sweep_dir / "sweep.json").read_text())
        assert meta["status"] == "cancelled", meta
        kept = records(sweep_dir)
        assert 2 <= len(kept) < TRIALS, kept
        time.sleep(4)  # a trial still queued would have started by now
        assert [x for x, t in starts(project) if t > answered_at] == [], "no trial starts after the cancel"
        assert len(records(sweep_dir)) == len(kept), "a stopped trial is not recorded"

        resumed = mlframework(tmp_path, "sweep", "--resume", sweep_dir.name, "--results", "res", url=vhost_url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = records(sweep_dir)
    assert sorted(r["trial"] for r in final) == [f"t{i:04d}" for i in range(TRIALS)], "every trial recorded once"
    assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "finished"


def test_ctrl_c_then_no_leaves_the_trials_running_for_resume(tmp_path, vhost_url):
    from mlframework.cluster.embedded.workers import LocalWorker
    from mlframework.sweep.wire.app import BrokerSettings

    project = slow_project(tmp_path / "proj", trials=TRIALS, sleep=1.0)
    with LocalWorker(BrokerSettings(vhost_url), project, 2, tmp_path / "worker.log", node_name="w@%h"):
        terminal, sweep_dir = _sweep_on_a_terminal(tmp_path, vhost_url)
        try:
            terminal.type(b"\n")  # the default: no
            status = terminal.wait(timeout=30)
            answered_at = time.time()
        finally:
            terminal.close()
        assert status == 130, terminal.output
        assert f"sweep {sweep_dir.name} left running on the cluster" in terminal.output, terminal.output
        assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "interrupted"
        deadline = time.monotonic() + 60  # the worker goes on with the queued trials, no driver needed
        while len(starts(project)) < TRIALS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any(t > answered_at for _, t in starts(project)), "trials went on after the answer"
        resumed = mlframework(tmp_path, "sweep", "--resume", sweep_dir.name, "--results", "res", url=vhost_url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(r["trial"] for r in records(sweep_dir)) == [f"t{i:04d}" for i in range(TRIALS)]
    assert sorted(x for x, _ in starts(project)) == list(range(TRIALS)), "each trial ran once: collected, not rerun"


def test_without_a_terminal_ctrl_c_asks_nothing_and_leaves_the_trials(tmp_path, vhost_url):
    from mlframework.cluster.embedded.workers import LocalWorker
    from mlframework.sweep.wire.app import BrokerSettings

    project = slow_project(tmp_path / "proj", trials=TRIALS, sleep=1.0)
    env = {**os.environ, "COLUMNS": "200", "MLFRAMEWORK_BROKER_URL": vhost_url, "MLFRAMEWORK_LIVE_REPORT": "0"}
    with LocalWorker(BrokerSettings(vhost_url), project, 2, tmp_path / "worker.log", node_name="w@%h"):
        driver = subprocess.Popen(
            [sys.executable, "-m", "mlframework", "sweep", str(project), "--results", "res", "--max-batch", "1"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            sweep_dir = wait_for_records(tmp_path / "res", 1, timeout=120)
            driver.send_signal(signal.SIGINT)
            output, _ = driver.communicate(timeout=30)
        finally:
            if driver.poll() is None:
                driver.kill()
    assert driver.returncode == 130, output
    assert "[y/N]" not in output and "cancelled" not in output, output
    assert f"resume it: mlframework sweep --resume {sweep_dir.name}" in output, output
    assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "interrupted"
