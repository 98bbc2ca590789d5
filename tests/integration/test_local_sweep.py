"""Embedded mode end to end: real Celery workers on the filesystem broker, through the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scratch_projects import CRASH_IN_BATCH, make_project, start_sweep, wait_for_records

REPO = Path(__file__).resolve().parents[2]


def mlframework(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def only_sweep_dir(results: Path) -> Path:
    (directory,) = [p for p in results.iterdir() if p.is_dir()]
    return directory


def read_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_local_sweep_records_every_trial(tmp_path):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0.5, 2.5, 0.5]\nlabel: [a, 'two words']\n")
    result = mlframework("sweep", str(project), "--local", "--workers", "2", "--results", "res", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = only_sweep_dir(tmp_path / "res")
    assert sweep_dir.name in result.stdout.splitlines()[0], "the sweep id is printed at start"
    assert sweep_dir.name in result.stdout.splitlines()[-1], "and at the end"

    rows = read_rows(sweep_dir)
    assert list(rows[0]) == ["trial", "status", "host", "duration_s", "x", "label", "score", "loss"]
    assert len(rows) == 8 and {row["status"] for row in rows} == {"SUCCESS"}
    assert [(row["x"], row["label"]) for row in rows[:3]] == [("0.5", "a"), ("0.5", "two words"), ("1.0", "a")]
    assert {float(row["score"]) for row in rows} == {3 * x for x in (0.5, 1.0, 1.5, 2.0)}

    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 8
    record = next(r for r in records if r["trial"] == "t0001")
    assert record["exit_code"] == 0 and "'--label=two words'" in record["command"]
    assert [h["step"] for h in record["history"]] == [0, 1, 2]
    log = (sweep_dir / "logs" / "t0001.log").read_text()
    assert "training x=0.5 label='two words'" in log and "done" in log

    assert "best: score=6" in result.stdout, "the summary names the best trial by the first metric"
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["status"] == "finished" and sweep["succeeded"] == 8 and sweep["trials"] == 8


def test_a_failing_trial_is_failure_with_its_stderr_and_exit_status_1(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1, -1, 2]\n")
    result = mlframework("sweep", str(project), "--local", "--workers", "2", "--results", "res", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {row["trial"]: row for row in read_rows(only_sweep_dir(tmp_path / "res"))}
    assert [rows[t]["status"] for t in ("t0000", "t0001", "t0002")] == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert "diverged at x=-1.0" in result.stdout, "a failed trial's output is shown"
    assert "exit code 3" in result.stdout
    record = next(
        json.loads(line)
        for line in (only_sweep_dir(tmp_path / "res") / "trials.jsonl").read_text().splitlines()
        if '"t0001"' in line
    )
    assert record["exit_code"] == 3 and record["stderr_tail"] == ["diverged at x=-1.0"]


def test_echo_output_streams_back_prefixed_by_trial_and_host(tmp_path):
    project = make_project(tmp_path / "proj", "n: [1, 2]\n")
    result = mlframework(
        "sweep", str(project), "--task", "echo", "--local", "--show-output", "--results", "res", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    host = os.uname().nodename
    assert f"[t0001 {host}] echo t0001 on {host}: 2/2 s" in result.stdout
    assert f"[t0000 {host}] echo t0000 on {host}: 1/1 s" in result.stdout


def test_an_unknown_task_is_one_line_exit_2_and_nothing_recorded(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1]\n")
    result = mlframework("sweep", str(project), "--task", "trian", "--local", "--results", "res", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no task named 'trian'" in result.stderr and "echo, train" in result.stderr
    assert not (tmp_path / "res").exists()


def test_unsafe_yaml_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    project = make_project(tmp_path / "proj", f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    result = mlframework("sweep", str(project), "--local", "--results", "res", cwd=tmp_path)
    assert result.returncode == 2
    assert "parameters.yml" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "res").exists()


@pytest.mark.parametrize("sample", ["sklearn_digits"])
def test_the_cpu_sample_project_reaches_090_accuracy(tmp_path, sample):
    result = mlframework(
        "sweep", str(REPO / "projects" / sample), "--local", "--workers", "2", "--results", "res", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_rows(only_sweep_dir(tmp_path / "res"))
    assert rows and all(row["status"] == "SUCCESS" for row in rows)
    assert max(float(row["accuracy"]) for row in rows) >= 0.9


def test_the_pytorch_mnist_sample_trains_to_090_accuracy(tmp_path):
    grid = tmp_path / "grid.yml"
    grid.write_text("gpu: -1\nbatchsize: 100\nepoch: 10\nunit: [100]\n")
    result = mlframework(
        "sweep",
        str(REPO / "projects" / "mnist"),
        "-p",
        str(grid),
        "--local",
        "--workers",
        "1",
        "--results",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = only_sweep_dir(tmp_path / "res")
    (row,) = read_rows(sweep_dir)
    assert row["status"] == "SUCCESS" and float(row["accuracy"]) >= 0.9
    (record,) = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert [h["step"] for h in record["history"]] == list(range(1, 11)), "one metrics record per epoch"


def test_run_training_entry_module_runs_a_local_sweep(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "projects" / "sklearn_digits" / "run_training.py"),
            "--local",
            "-q",
            "--results",
            "res",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 succeeded, 0 failed" in result.stdout


def test_gpus_gives_one_worker_per_gpu_each_seeing_only_its_own(tmp_path):
    # No GPU is needed to check the pinning itself: each GPU's worker runs its
    # trials with CUDA_VISIBLE_DEVICES set to that GPU, and the record names it.
    script = "import os; print('visible', os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
    project = make_project(
        tmp_path / "proj",
        "n: !!python/tuple [0, 8]\n",
        extra_tasks="""
        @mlf.task
        def visible(trial):
            import sys, time
            time.sleep(0.6)  # 8 x 0.6 s: longer than a worker takes to start
            trial.run([sys.executable, "-c", SCRIPT])
            return {}
    """.replace("SCRIPT", repr(script)),
    )
    result = mlframework(
        "sweep", str(project), "--local", "--gpus", "0,1", "--task", "visible", "--results", "res", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = only_sweep_dir(tmp_path / "res")
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for record in records:
        log = (sweep_dir / "logs" / f"{record['trial']}.log").read_text()
        assert f"visible {record['gpu']}" in log, (record["gpu"], log)
    assert {record["gpu"] for record in records} == {"0", "1"}, "both GPUs' workers took trials"


def test_a_killed_local_sweep_resumes_and_leaves_no_worker_behind(tmp_path):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [1, 9]\nsleep: [0.4]\n")
    driver = start_sweep(tmp_path, str(project), "--local", "--workers", "2", "--results", "res")
    try:
        sweep_dir = wait_for_records(tmp_path / "res", 2)
    finally:
        driver.kill()
        driver.wait(timeout=10)
    recorded = {json.loads(line)["trial"] for line in (sweep_dir / "trials.jsonl").read_text().splitlines()}

    def workers_of_this_project() -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if b"mlframework.sweep.trials.worker" in (proc / "cmdline").read_bytes() and os.readlink(
                    proc / "cwd"
                ) == str(project.resolve()):
                    found.append(int(proc.name))
            except (OSError, ValueError):
                continue
        return found

    deadline = time.monotonic() + 20
    while workers_of_this_project() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers_of_this_project(), "the local workers die with their driver"

    result = mlframework(
        "sweep", "--resume", sweep_dir.name, "--local", "--workers", "2", "--results", "res", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in records) == [f"t{i:04d}" for i in range(8)], "one record per trial"
    for trial in recorded:
        log = (sweep_dir / "logs" / f"{trial}.log").read_text()
        assert log.count("training x=") == 1, f"{trial} was recorded before the kill and ran again"


def test_a_local_batch_whose_worker_process_dies_loses_nothing(tmp_path):
    project = make_project(tmp_path / "proj", "x: !!python/tuple [0, 400]\ncrash: [250]\n", extra_tasks=CRASH_IN_BATCH)
    result = mlframework(
        "sweep",
        str(project),
        "--task",
        "crash_at",
        "--local",
        "--workers",
        "2",
        "--max-starts",
        "2",
        "--results",
        "res",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    records = [
        json.loads(line) for line in (only_sweep_dir(tmp_path / "res") / "trials.jsonl").read_text().splitlines()
    ]
    assert sorted(r["params"]["x"] for r in records) == list(range(400)), "one record per trial, none lost"
    (failed,) = [r for r in records if r["status"] != "SUCCESS"]
    assert failed["params"]["x"] == 250 and "worker died 2 times" in failed["error"]
    assert len({r["message"] for r in records}) < 100, "short trials were not batched"


def test_a_sweep_id_given_twice_is_refused_and_the_first_record_kept(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1]\n")
    first = mlframework(
        "sweep", str(project), "--local", "--workers", "1", "--sweep-id", "mine", "--results", "res", cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    kept = (tmp_path / "res" / "mine" / "trials.jsonl").read_text()
    again = mlframework("sweep", str(project), "--local", "--sweep-id", "mine", "--results", "res", cwd=tmp_path)
    assert again.returncode == 2 and "sweep mine exists; --resume it" in again.stderr, again.stderr
    assert (tmp_path / "res" / "mine" / "trials.jsonl").read_text() == kept
