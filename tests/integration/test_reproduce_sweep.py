"""`mlframework reproduce` end to end in embedded mode: the trial runs again and a new commit is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scratch_projects import make_project


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def mlframework(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )


def records(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def test_a_trial_runs_again_with_its_parameters_and_a_changed_commit_is_said(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1.0, 2.0]\nlabel: ['two words']\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "first")
    first = mlframework(
        "sweep", str(project), "--local", "--workers", "1", "--results", "res", "--sweep-id", "orig", cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    (original,) = [r for r in records(tmp_path / "res" / "orig") if r["trial"] == "t0001"]

    same = mlframework(
        "reproduce", "orig", "t0001", "--local", "--results", "res", "--sweep-id", "again1", cwd=tmp_path
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert "same project commit, local changes, packages" in same.stdout
    (again,) = records(tmp_path / "res" / "again1")
    assert again["params"] == original["params"] == {"x": 2.0, "label": "two words"}
    assert again["command"].split()[1:] == original["command"].split()[1:], "the same command line"
    assert again["metrics"] == original["metrics"]
    assert again["provenance"]["packages"] == original["provenance"]["packages"]

    (project / "train.py").write_text((project / "train.py").read_text() + "# changed\n")
    git(project, "commit", "-q", "-am", "second")
    changed = mlframework("reproduce", "orig", "1", "--local", "--results", "res", "--sweep-id", "again2", cwd=tmp_path)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"differs: project commit: {original['provenance']['commit']} -> " in changed.stdout


def test_an_unknown_trial_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "res").mkdir()
    result = mlframework("reproduce", "nosuch", "t0000", "--local", "--results", "res", cwd=tmp_path)
    assert result.returncode == 2 and "no sweep 'nosuch' in res (check --results" in result.stderr
    assert "Traceback" not in result.stderr
