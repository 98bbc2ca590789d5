"""Metrics a script only prints, in embedded mode: named as the user names them, with their steps; failure tails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scratch_projects import make_project

# Prints like a public GPT trainer: a config echo, start-up numbers, then evals and iterations.
GPT_LIKE = """
import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
args = parser.parse_args()
for key, value in (("gradient_accumulation_steps", 40), ("batch_size", 64), ("n_layer", 6), ("dropout", 0.2)):
    print(f"{key} = {value}")
print("tokens per iteration will be: 12,288")
print("number of parameters: 10.65M")
if args.lr < 0:
    for i in range(30):
        print(f"config echo line {i}: block_size = 256")
    raise ValueError(f"Unknown config key: lr={args.lr}")
for step in range(3):
    val = abs(args.lr - 0.01) * 10 + 1 / (step + 1)
    print(f"step {step * 50}: train loss {val - 0.1:.4f}, val loss {val:.4f}")
    print(f"iter {step * 50}: loss {val - 0.05:.4f}, time 48.21ms, mfu 1.23%")
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


def gpt_like_project(root: Path, grid: str) -> Path:
    project = make_project(root, grid)
    (project / "gpt_like.py").write_text(GPT_LIKE)
    (project / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('gpt_like.py')\n")
    return project


def records(tmp_path: Path) -> dict[str, dict]:
    (trials,) = (tmp_path / "res").glob("*/trials.jsonl")
    return {r["trial"]: r for r in map(json.loads, trials.read_text().splitlines())}


def test_a_metric_named_as_printed_ranks_the_trials_and_keeps_its_steps(tmp_path):
    project = gpt_like_project(tmp_path / "proj", "lr: [0.1, 0.01, 0.05]\n")
    result = sweep(tmp_path, project, "--workers", "2", "--metric", "val loss")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "best trials by val loss (min)" in result.stdout
    assert "best: val loss=0.3333 in t0001: --lr=0.01" in result.stdout
    assert "ranked by val loss (min); other metrics seen: train loss, loss" in result.stdout
    found = records(tmp_path)
    assert set(found["t0001"]["metrics"]) == {"train loss", "val loss", "loss"}, "no config echo, no step"
    history = found["t0001"]["history"]
    assert [(h["step"], h["values"]["val loss"]) for h in history] == [(0, 1.0), (50, 0.5), (100, 0.3333)]
    sweep_dir = next((tmp_path / "res").iterdir())
    shown = subprocess.run(
        [sys.executable, "-m", "mlframework", "show", sweep_dir.name, "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "best: val loss=0.3333 in t0001" in shown.stdout, shown.stdout + shown.stderr


def test_without_metric_the_guess_is_not_a_config_echo_and_a_failure_shows_its_traceback(tmp_path):
    project = gpt_like_project(tmp_path / "proj", "lr: [0.02, -1]\n")
    result = sweep(tmp_path, project, "--workers", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "best trials by val loss (min)" in result.stdout, "held-out loss, not gradient_accumulation_steps"
    assert "ranked by val loss (min); other metrics seen: train loss, loss (" in result.stdout
    failed = records(tmp_path)["t0001"]
    assert failed["stderr_tail"][-1] == "ValueError: Unknown config key: lr=-1.0"
    assert failed["stdout_tail"][-1] == "config echo line 29: block_size = 256"
    live = result.stdout[result.stdout.index("t0001 FAILURE") :].splitlines()
    assert "Traceback (most recent call last):" in live[1], "the traceback first"
    assert any("ValueError: Unknown config key" in line for line in live[:16])
    sweep_dir = next((tmp_path / "res").iterdir())
    shown = subprocess.run(
        [sys.executable, "-m", "mlframework", "show", sweep_dir.name, "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "ValueError: Unknown config key: lr=-1.0" in shown
    assert shown.index("ValueError") < shown.index("config echo line 29")


def test_the_worker_learns_the_metric_asked_for_and_reads_a_name_no_default_form_reads(tmp_path):
    project = gpt_like_project(tmp_path / "proj", "lr: [0.01, 0.02]\n")
    result = sweep(tmp_path, project, "--workers", "2", "--metric", "MFU", "--mode", "max")
    assert result.returncode == 0, result.stdout + result.stderr
    found = records(tmp_path)["t0000"]
    assert found["metrics"]["MFU"] == 1.23 and "mfu" not in found["metrics"]
    assert [h["step"] for h in found["history"] if "MFU" in h["values"]] == [0, 50, 100]
    assert "best trials by MFU (max)" in result.stdout
