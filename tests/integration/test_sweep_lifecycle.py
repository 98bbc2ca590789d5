"""A trial's life and a sweep's end in embedded mode, with real workers and real signals.

Nothing outlives its sweep (checked with ``ps``), a sweep ends when its last
trial is recorded, it resumes from anywhere, and its errors show their cause.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from scratch_projects import make_project, wait_for_records

# A script that leaves children behind: one in its process group, one in a session of its own, one
# daemon (double fork, setsid) that cleared its environment, all holding its stdout open; it ignores
# SIGTERM (so do its children) unless told otherwise.
STUBBORN = """
import argparse, os, signal, subprocess, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--marker", default="")
args = parser.parse_args()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(["sleep", "300" + args.marker])
subprocess.Popen(["sleep", "301" + args.marker], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve("/bin/sleep", ["sleep", "302" + args.marker], {})
    os._exit(0)
print(f"step 1 loss={1 / (1 + args.x):.4f}", flush=True)
print(f"accuracy: {args.x / 100}", flush=True)
time.sleep(args.sleep)
"""


def marker() -> str:
    """A fraction of a second unique to one test, appended to its ``sleep`` children's argument."""
    return f".{uuid.uuid4().int % 10**9:09d}"


def stubborn_project(root: Path, grid: str) -> Path:
    project = make_project(root, grid)
    (project / "stubborn.py").write_text(STUBBORN)
    (project / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('stubborn.py')\n")
    return project


def leftovers(tmp_path: Path, mark: str) -> list[str]:
    """``ps`` lines of processes of the test's sweep: the marked children, or anything running in tmp_path."""
    lines = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    found = []
    for line in lines.splitlines():
        pid, _, args = line.strip().partition(" ")
        if int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if mark in args or cwd.startswith(str(tmp_path)):
            found.append(line.strip())
    return found


def wait_until_gone(tmp_path: Path, mark: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    left = leftovers(tmp_path, mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers(tmp_path, mark)
    return left


def sweep_process(tmp_path: Path, project: Path, *extra: str) -> subprocess.Popen[str]:
    """The sweep as a process of its own, its temporary files under tmp_path/tmp."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--results", "res", *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "TMPDIR": str(tmp_path / "tmp")},
    )


def sweep_meta(tmp_path: Path) -> dict:
    (meta,) = (tmp_path / "res").glob("*/sweep.json")
    return json.loads(meta.read_text())


@pytest.mark.parametrize(
    ("number", "twice"),
    [
        (signal.SIGKILL, False),
        (signal.SIGTERM, False),
        (signal.SIGHUP, False),
        (signal.SIGINT, False),
        (signal.SIGINT, True),
    ],
    ids=["kill", "term", "hup", "ctrl-c", "ctrl-c-twice"],
)
def test_a_driver_stopped_by_a_signal_leaves_nothing_running(tmp_path, number, twice):
    mark = marker()
    values = ", ".join(str(i) for i in range(20))
    project = stubborn_project(tmp_path / "proj", f"x: [{values}]\nsleep: [1.5]\nmarker: ['{mark}']\n")
    driver = sweep_process(tmp_path, project, "--workers", "2")
    sweep_dir = wait_for_records(tmp_path / "res", 1)
    assert leftovers(tmp_path, mark), "the sweep runs trials and their children"
    os.kill(driver.pid, number)
    stopped = time.monotonic()
    if twice:
        time.sleep(0.3)
        os.kill(driver.pid, number)
    output, _ = driver.communicate(timeout=60)
    left = wait_until_gone(tmp_path, mark, timeout=5)
    assert not left, f"still running 5 s after {signal.Signals(number).name} of the driver: {left}"
    assert time.monotonic() - stopped < 10
    records_then = len((sweep_dir / "trials.jsonl").read_text().splitlines())
    deadline = time.monotonic() + 5
    while sweep_meta(tmp_path)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sweep_meta(tmp_path)["status"] == "interrupted"
    assert not list((tmp_path / "tmp").iterdir()), "the temporary broker directory is removed"
    time.sleep(2)
    assert len((sweep_dir / "trials.jsonl").read_text().splitlines()) == records_then, "no trial ran after"
    if number != signal.SIGKILL:
        assert driver.returncode == 128 + number
        assert f"mlframework sweep --resume {sweep_dir.name} --results {tmp_path / 'res'} --local" in output


def test_a_trial_ends_when_its_script_does_and_its_children_go_with_it(tmp_path):
    mark = marker()
    project = stubborn_project(tmp_path / "proj", f"x: [1, 2]\nmarker: ['{mark}']\n")
    driver = sweep_process(tmp_path, project, "--workers", "1")
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 0, output
    records = [json.loads(line) for line in next((tmp_path / "res").glob("*/trials.jsonl")).read_text().splitlines()]
    # The script takes well under a second; its children (300 s) must not count, nor hold its slot 10 s.
    assert all(record["duration_s"] < 5 for record in records), [r["duration_s"] for r in records]
    assert not leftovers(tmp_path, mark)


def test_a_sweep_returns_soon_after_its_summary(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1, 2, 3]\n")
    driver = sweep_process(tmp_path, project, "--workers", "2")
    summary_at = None
    assert driver.stdout is not None
    for line in driver.stdout:
        if " finished in " in line:
            summary_at = time.monotonic()
    driver.wait(timeout=60)
    assert summary_at is not None and driver.returncode == 0
    # bench/ measures it tightly (target < 1 s); here only that nothing waits on a timeout (it was 5-15 s).
    assert time.monotonic() - summary_at < 4


def test_an_interrupted_sweep_resumes_from_another_directory(tmp_path):
    values = ", ".join(str(i) for i in range(12))
    project = make_project(tmp_path / "proj", f"x: [{values}]\nsleep: [0.5]\n")
    driver = sweep_process(tmp_path, project, "--workers", "2")
    sweep_dir = wait_for_records(tmp_path / "res", 2)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=60)
    assert "interrupted" in output and "resume it: " in output
    command = output.split("resume it: ")[1].splitlines()[0].split()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = subprocess.run(
        [sys.executable, "-m", "mlframework", *command[1:]],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len((sweep_dir / "trials.jsonl").read_text().splitlines()) == 12
    assert Path(json.loads((sweep_dir / "sweep.json").read_text())["parameters_file"]).is_absolute()


def test_an_import_error_in_tasks_py_shows_its_traceback_and_records_nothing(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1]\n")
    (project / "tasks.py").write_text("import mlframework as mlf\nimport helpers_that_do_not_exist\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "tasks.py: importing it failed: ModuleNotFoundError" in result.stderr.splitlines()[0]
    assert "import helpers_that_do_not_exist" in result.stderr, "the traceback's tail names the line"
    assert not (tmp_path / "res").exists()


def test_a_worker_that_fails_to_start_shows_its_log_and_leaves_no_sweep_directory(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1, 2]\n")
    # Imports on the driver, fails in the workers only (they are told their share of the CPUs).
    (project / "tasks.py").write_text(
        "import os\nimport mlframework as mlf\n\n"
        "if os.environ.get('MLFRAMEWORK_SLOTS'):\n    raise RuntimeError('the workers cannot load this')\n\n"
        "train = mlf.train_task('train.py')\n"
    )
    driver = sweep_process(tmp_path, project, "--workers", "1")
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 2, output
    assert "the local Celery worker exited" in output
    assert "  | RuntimeError: the workers cannot load this" in output, "the worker log's last lines are shown"
    assert not list((tmp_path / "res").glob("*")), "no sweep directory with nothing in it"
