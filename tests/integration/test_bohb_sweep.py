"""``--search bohb --prune asha`` end to end: embedded workers run it, the study records every trial, --resume goes on."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from search_projects import make_search_project

from mlframework.sweep.search.study import JOURNAL


def mlframework(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_local_bohb_search_with_asha_finishes_and_records_every_trial(tmp_path):
    space = "x: !uniform [0.0, 1.0]\nsteps: 8\npause: 0.1\n"
    project = make_search_project(tmp_path / "proj", space)
    result = mlframework(
        "sweep",
        str(project),
        "-p",
        str(project / "search.yml"),
        "--local",
        "--workers",
        "2",
        "--search",
        "bohb",
        "--trials",
        "14",
        "--seed",
        "0",
        "--metric",
        "score",
        "--prune",
        "asha",
        "--results",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert len({r["trial"] for r in records}) == 14, "every trial asked is recorded"
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    statuses = [row["status"] for row in rows]
    assert set(statuses) <= {"SUCCESS", "PRUNED"} and "SUCCESS" in statuses
    assert "PRUNED" in statuses, "ASHA stops some of them"
    assert all(0.0 <= float(row["x"]) <= 1.0 for row in rows)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    study = optuna.load_study(study_name=sweep_dir.name, storage=storage)
    told = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(told) == 14 and all(t.intermediate_values for t in told), "the curves the sampler learns from"
    assert json.loads((sweep_dir / "sweep.json").read_text())["search"]["sampler"] == "bohb"
