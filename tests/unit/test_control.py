"""Stopping a running trial command on this machine (sweep/wire/control.py) and metrics.should_stop()."""

from __future__ import annotations

import subprocess
import sys
import time

from mlframework.sweep.wire.control import registered, stop_local

POLITE = """
import os, sys, time
from mlframework import metrics
while not metrics.should_stop():
    time.sleep(0.02)
print("checkpoint saved", flush=True)
"""


def _wait(process: subprocess.Popen, timeout: float = 30) -> int:
    return process.wait(timeout=timeout)


def test_a_stopped_trial_gets_sigterm_and_its_reason_and_latency_are_kept(tmp_path):
    with registered("w1@host", "sweep-1", "t0003") as registration:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        registration.started(process.pid)
        assert stop_local("w1@host", "sweep-1", ["t0009"], "pruned", 5.0) == [], "another trial: untouched"
        assert process.poll() is None
        assert stop_local("w1@host", "sweep-1", None, "pruned", 5.0, decided_at=time.time()) == ["t0003"]
        assert _wait(process) == -15
        request = registration.stop_request
        assert request is not None and request["reason"] == "pruned" and request["latency_s"] >= 0
    assert not registration.path.exists() and not registration.stop_file.exists(), "the registry is cleaned up"


def test_a_script_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    ignore = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    with registered("w2@host", "sweep-2", "t0000") as registration:
        process = subprocess.Popen([sys.executable, "-c", ignore], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        registration.started(process.pid)
        assert stop_local("w2@host", "sweep-2", ["t0000"], "cancelled", 0.5) == ["t0000"]
        assert _wait(process) == -9


def test_should_stop_lets_a_script_finish_politely(tmp_path):
    with registered("w3@host", "sweep-3", "t0001") as registration:
        process = subprocess.Popen(
            [sys.executable, "-c", POLITE], env={**registration.env, "PATH": ""}, stdout=subprocess.PIPE, text=True
        )
        registration.started(process.pid)
        time.sleep(1.0)  # the script has called should_stop() at least once: SIGTERM no longer ends it
        stop_local("w3@host", "sweep-3", None, "pruned", 20.0)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0 and "checkpoint saved" in output
