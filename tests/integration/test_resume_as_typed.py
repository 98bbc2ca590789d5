"""``--resume`` added to the original command: accepted when it matches the sweep's record, else the first difference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scratch_projects import make_project

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire.app import BrokerSettings

COUNTED = """
    @mlf.task
    def counted(trial):
        return {"score": trial.params["x"]}
"""


def _sweep(cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "MLFRAMEWORK_BROKER_URL": url, "COLUMNS": "200"},
    )


def test_the_original_command_with_resume_added_is_accepted_and_a_changed_one_names_the_difference(tmp_path, rabbitmq):
    project = make_project(tmp_path / "proj", "x: [1]\n", extra_tasks=COUNTED)
    grid = tmp_path / "grid.yml"
    grid.write_text("x: [1, 2, 3]\n")
    command = [str(project), "-p", str(grid), "--task", "counted", "--retries", "1", "--results", "res"]
    with LocalWorker(BrokerSettings(rabbitmq.url), project, 1, tmp_path / "w.log", node_name="w@%h"):
        first = _sweep(tmp_path, rabbitmq.url, *command)
        assert first.returncode == 0, first.stdout + first.stderr
        (sweep_dir,) = (tmp_path / "res").iterdir()
        again = _sweep(tmp_path, rabbitmq.url, *command, "--resume", sweep_dir.name)
    assert again.returncode == 0, again.stdout + again.stderr

    other = tmp_path / "other.yml"
    other.write_text("x: [1, 2]\n")
    changed_grid = _sweep(tmp_path, rabbitmq.url, *command[:2], str(other), *command[3:], "--resume", sweep_dir.name)
    assert changed_grid.returncode == 2 and f"the grid of {other} differs" in changed_grid.stderr
    changed_option = _sweep(
        tmp_path, rabbitmq.url, *command[:-4], "--retries", "2", "--results", "res", "--resume", sweep_dir.name
    )
    assert changed_option.returncode == 2 and "--retries 2 differs from the sweep's 1" in changed_option.stderr
    elsewhere = make_project(tmp_path / "elsewhere", "x: [1, 2, 3]\n", extra_tasks=COUNTED)
    wrong_project = _sweep(tmp_path, rabbitmq.url, str(elsewhere), *command[1:], "--resume", sweep_dir.name)
    assert wrong_project.returncode == 2 and "is not the sweep's project" in wrong_project.stderr
    assert "Traceback" not in changed_grid.stderr + changed_option.stderr + wrong_project.stderr
