"""Provenance end to end: an embedded sweep of a dirty git project records commit, diff and worker packages."""

from __future__ import annotations

import hashlib
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


def test_each_trial_carries_the_commit_the_diff_hash_and_the_package_hash(tmp_path):
    project = make_project(tmp_path / "proj", "x: [1.0, 2.0, 3.0]\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "first")
    commit = git(project, "rev-parse", "HEAD").strip()
    train = project / "train.py"
    train.write_text(train.read_text().replace('print("done", flush=True)', 'print("done!", flush=True)'))

    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--workers", "2", "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = [p for p in (tmp_path / "res").iterdir() if p.is_dir()]
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 3

    diff = (sweep_dir / "project.diff").read_text()
    assert '+print("done!", flush=True)' in diff
    hashes = {r["provenance"]["packages"] for r in records}
    assert len(hashes) == 1, "every local worker runs the same Python environment"
    for record in records:
        found = record["provenance"]
        assert found["commit"] == commit
        assert found["diff_sha256"] == hashlib.sha256(diff.encode()).hexdigest()
        assert found["hostname"] and "gpu_model" not in found and "image" not in found
        assert record["command"] and "train.py" in record["command"]

    (digest,) = hashes
    listed = (sweep_dir / "environments" / f"{digest}.txt").read_text()
    assert hashlib.sha256(listed.encode()).hexdigest() == digest
    assert any(line.lower().startswith("celery==") for line in listed.splitlines())
    assert [p.name for p in (sweep_dir / "environments").iterdir()] == [f"{digest}.txt"]
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["project_revision"]["commit"] == commit and sweep["project_revision"]["dirty"] is True
