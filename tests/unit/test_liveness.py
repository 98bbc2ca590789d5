"""A sweep recorded running whose driver died is told interrupted."""

from __future__ import annotations

import os
import socket
import subprocess

from mlframework.sweep.liveness import effective_status


def test_a_running_sweep_with_a_dead_driver_on_this_host_is_interrupted():
    gone = subprocess.Popen(["true"])
    gone.wait()
    here = socket.gethostname()
    assert effective_status({"status": "running", "driver_host": here, "driver_pid": gone.pid}) == "interrupted"
    assert effective_status({"status": "running", "driver_host": here, "driver_pid": os.getpid()}) == "running"
    assert effective_status({"status": "running", "driver_host": "elsewhere", "driver_pid": gone.pid}) == "running"
    assert effective_status({"status": "finished", "driver_host": here, "driver_pid": gone.pid}) == "finished"
