"""``--search bohb --prune asha`` end to end: embedded workers run it, the study records every trial, --resume goes on."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from scratch_projects import start_sweep, wait_for_records
from search_projects import make_search_project

from mlframework.sweep.search.study import JOURNAL

SPACE = "x: !uniform [0.0, 1.0]\nsteps: 8\npause: 0.1\n"


def mlframework(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def _records(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def _study(sweep_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    return optuna.load_study(study_name=sweep_dir.name, storage=storage)


def test_a_local_bohb_search_with_asha_finishes_and_records_every_trial(tmp_path):
    project = make_search_project(tmp_path / "proj", SPACE)
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
    assert len({r["trial"] for r in _records(sweep_dir)}) == 14, "every trial asked is recorded"
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    statuses = [row["status"] for row in rows]
    assert set(statuses) <= {"SUCCESS", "PRUNED"} and "SUCCESS" in statuses
    assert "PRUNED" in statuses, "ASHA stops some of them"
    assert all(0.0 <= float(row["x"]) <= 1.0 for row in rows)
    told = [t for t in _study(sweep_dir).trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(told) == 14 and all(t.intermediate_values for t in told), "the curves the sampler learns from"
    assert json.loads((sweep_dir / "sweep.json").read_text())["search"]["sampler"] == "bohb"


def test_a_killed_bohb_search_resumes_its_study_and_finishes_the_budget(tmp_path):
    project = make_search_project(tmp_path / "proj", SPACE)
    args = ["-p", str(project / "search.yml"), "--search", "bohb", "--trials", "12", "--seed", "3"]
    args += ["--metric", "score", "--prune", "asha", "--local", "--workers", "2", "--results", "res"]
    driver = start_sweep(tmp_path, str(project), *args)
    try:
        sweep_dir = wait_for_records(tmp_path / "res", 4, timeout=120)
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    before = {r["trial"]: r for r in _records(sweep_dir)}
    result = mlframework(
        "sweep", "--resume", sweep_dir.name, "--local", "--workers", "2", "--results", "res", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = _records(sweep_dir)
    assert len(records) == len({r["trial"] for r in records}) == 12, "no trial twice, the budget of 12 kept"
    after = {r["trial"]: r for r in records}
    for trial, record in before.items():
        assert after[trial]["started_at"] == record["started_at"], f"{trial} was not run again"
    told = [t for t in _study(sweep_dir).trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(told) == 12, "the resumed driver told the same study"
    assert json.loads((sweep_dir / "sweep.json").read_text())["search"]["seed"] == 3


def test_trials_without_search_run_a_bohb_search_of_the_grid_file(tmp_path):
    """``--trials 6 --metric score --prune hyperband`` and no --search: bohb searches parameters.yml's interval."""
    project = make_search_project(tmp_path / "proj", SPACE)
    (project / "parameters.yml").write_text("x: !!python/tuple [0.0, 1.0, 0.05]\nsteps: 8\npause: 0.1\n")
    args = ["sweep", str(project), "--local", "--workers", "2", "--trials", "6", "--metric", "score"]
    result = mlframework(*args, "--prune", "hyperband", "--results", "res", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = _records(sweep_dir)
    assert len(records) == len({r["trial"] for r in records}) == 6, "six trials, not the grid's twenty"
    assert {r["status"] for r in records} <= {"SUCCESS", "PRUNED"}
    assert all(0.0 <= r["params"]["x"] < 1.0 for r in records) and len({r["params"]["x"] for r in records}) == 6
    search = json.loads((sweep_dir / "sweep.json").read_text())["search"]
    assert (search["sampler"], search["prune"], search["trials"]) == ("bohb", "hyperband", 6)
    assert "(a bohb search, pruned by hyperband)" in result.stdout, result.stdout
    shown = mlframework("show", sweep_dir.name, "--results", "res", cwd=tmp_path)
    assert shown.returncode == 0 and "(a bohb search, pruned by hyperband)" in shown.stdout, shown.stdout
