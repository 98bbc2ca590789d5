"""Trial controls in embedded mode: metrics from printed output, time limits, own directories, early checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scratch_projects import make_project

PRINTS_ONLY = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--sleep", type=float, default=0)
args = parser.parse_args()
import time; time.sleep(args.sleep)
open("model.pt", "w").write(str(args.x))
for step in range(3):
    print(f"step {step} train_loss={1 / (args.x + step):.4f}")
print(f"threads={os.environ.get('OMP_NUM_THREADS')}")  # after the steps: a value, not a config echo
print(f"val accuracy: {args.x / 10}")
"""


def sweep(tmp_path: Path, project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--results", "res", *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )


def records(tmp_path: Path) -> list[dict]:
    (trials,) = (tmp_path / "res").glob("*/trials.jsonl")
    return sorted((json.loads(line) for line in trials.read_text().splitlines()), key=lambda r: r["trial"])


def printing_project(root: Path, grid: str, train_args: str = "") -> Path:
    project = make_project(root, grid)
    (project / "prints.py").write_text(PRINTS_ONLY)
    (project / "tasks.py").write_text(f"import mlframework as mlf\n\ntrain = mlf.train_task('prints.py'{train_args})\n")
    return project


def test_a_script_that_only_prints_gets_its_metrics_recorded_and_ranked(tmp_path):
    project = printing_project(
        tmp_path / "proj",
        "x: [1, 3, 2]\n",
        r", output_scalars=[r'step (?P<step>\d+) train_loss=(?P<train_loss>[0-9.]+)', r'val accuracy: (?P<acc>[0-9.]+)']",
    )
    result = sweep(tmp_path, project, "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    found = records(tmp_path)
    assert [r["metrics"]["acc"] for r in found] == [0.1, 0.3, 0.2]
    assert [h["step"] for h in found[0]["history"] if "step" in h] == [0, 1, 2]
    assert "best: acc=0.3 in t0001" in result.stdout


def test_default_patterns_need_no_declaration_and_a_missing_metric_is_named(tmp_path):
    project = printing_project(tmp_path / "proj", "x: [1, 2]\n")
    result = sweep(tmp_path, project, "--workers", "2", "--metric", "acc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(records(tmp_path)[0]["metrics"]) >= {"train_loss", "val accuracy", "threads"}
    assert "no trial reported the metric 'acc'" in result.stdout and "accuracy" in result.stdout


def test_each_trial_works_in_its_own_directory_with_its_share_of_the_cpus(tmp_path):
    project = printing_project(tmp_path / "proj", "x: [1, 2]\n", ", cwd='trial'")
    result = sweep(tmp_path, project, "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").glob("*/")
    assert [(sweep_dir / "work" / t / "model.pt").read_text() for t in ("t0000", "t0001")] == ["1.0", "2.0"]
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert {r["metrics"]["threads"] for r in records(tmp_path)} == {expected}


def test_a_trial_past_its_timeout_is_failure_with_the_reason_and_retried(tmp_path):
    project = printing_project(tmp_path / "proj", "x: [1]\nsleep: [60]\n")
    result = sweep(tmp_path, project, "--trial-timeout", "1s", "--retries", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    (record,) = records(tmp_path)
    assert record["status"] == "FAILURE" and "timed out after 1s" in record["error"]
    assert record["attempt"] == 2 and len(record["attempts"]) == 1


def test_a_training_script_that_does_not_exist_is_found_before_anything_is_sent(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1, 2, 3]\n")
    (project / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('trian.py')\n")
    result = sweep(tmp_path, project)
    assert result.returncode == 2
    assert "train_task('trian.py')" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[0]
    assert not (tmp_path / "res").exists()
