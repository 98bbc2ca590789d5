"""One driver per sweep: a second driver of a sweep whose first is alive is refused, naming host and process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

from scratch_projects import make_project, start_sweep, wait_for_records

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire.app import BrokerSettings

SLOW = """
    @mlf.task
    def slow(trial):
        import time
        time.sleep(float(trial.params["sleep"]))
        return {"score": trial.params["x"]}
"""


def test_a_second_driver_is_refused_while_the_first_lives_and_resumes_once_it_is_gone(tmp_path, rabbitmq):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 30]\nsleep: [0.7]\n", extra_tasks=SLOW)
    env = {**os.environ, "MLFRAMEWORK_BROKER_URL": rabbitmq.url, "COLUMNS": "200"}

    def resume(sweep_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlframework", "sweep", "--resume", sweep_id, "--results", "res"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )

    with LocalWorker(BrokerSettings(rabbitmq.url), project, 1, tmp_path / "w.log", node_name="w@%h"):
        first = start_sweep(
            tmp_path, str(project), "--task", "slow", "--max-batch", "1", "--results", "res", broker_url=rabbitmq.url
        )
        try:
            sweep_dir = wait_for_records(tmp_path / "res", 1)
            before = (sweep_dir / "sweep.json").read_text()
            second = resume(sweep_dir.name)
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"is being driven by the driver pid {first.pid} on {socket.gethostname()}" in second.stderr
            assert "Traceback" not in second.stderr
            assert (sweep_dir / "sweep.json").read_text() == before, "the refused driver changed the record"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        third = resume(sweep_dir.name)
    assert third.returncode == 0, third.stdout + third.stderr
    assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "finished"
