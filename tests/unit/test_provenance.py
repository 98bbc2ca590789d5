"""Provenance: the project's git revision (clean and dirty), the worker's package hash, the stored lists."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from mlframework.sweep.trials import provenance
from mlframework.sweep.trials.provenance import (
    environment_for,
    packages,
    packages_hash,
    read_project_revision,
    save_environment,
    with_project,
    worker_provenance,
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "v1")
    return repo


def test_a_clean_checkout_gives_its_commit_and_no_diff(tmp_path):
    repo = make_repo(tmp_path)
    revision = read_project_revision(repo)
    assert revision is not None
    assert revision.as_dict() == {"commit": git(repo, "rev-parse", "HEAD").strip(), "dirty": False}
    revision.save_diff(tmp_path)
    assert not (tmp_path / "project.diff").exists()


def test_a_dirty_checkout_gives_the_hash_of_its_diff_and_stores_the_diff(tmp_path):
    repo = make_repo(tmp_path)
    (repo / "train.py").write_text("print('v2')\n")
    revision = read_project_revision(repo)
    assert revision is not None
    recorded = revision.as_dict()
    assert recorded["dirty"] is True
    assert "-print('v1')" in revision.diff and "+print('v2')" in revision.diff
    assert recorded["diff_sha256"] == hashlib.sha256(revision.diff.encode()).hexdigest()
    out = tmp_path / "sweep"
    out.mkdir()
    revision.save_diff(out)
    assert (out / "project.diff").read_text() == revision.diff
    # The diff applies to the commit: the stored file is enough to get the code back.
    git(repo, "checkout", "--", "train.py")
    git(repo, "apply", str(out / "project.diff"))
    assert (repo / "train.py").read_text() == "print('v2')\n"


def test_an_untracked_file_makes_it_dirty_and_outside_git_there_is_no_revision(tmp_path):
    repo = make_repo(tmp_path)
    (repo / "notes.txt").write_text("x\n")
    revision = read_project_revision(repo)
    assert revision is not None and revision.as_dict()["dirty"] is True
    plain = tmp_path / "plain"
    plain.mkdir()
    assert read_project_revision(plain) is None


def test_the_package_hash_is_of_the_sorted_list_and_names_this_environment():
    listed = packages()
    assert any(line.lower().startswith("celery==") for line in listed)
    assert list(listed) == sorted(listed, key=str.lower)
    assert packages_hash() == hashlib.sha256("".join(f"{p}\n" for p in listed).encode()).hexdigest()
    found = worker_provenance(None)
    assert found["packages"] == packages_hash() and "gpu_model" not in found


def test_the_list_is_sent_once_per_sweep_and_stored_once_per_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_sent_environment", set())
    first = environment_for("s1")
    assert first["environment"]["hash"] == packages_hash()
    assert environment_for("s1") == {} and environment_for("s2")["environment"]["hash"] == packages_hash()

    save_environment(tmp_path, {"type": "started", **first})
    stored = tmp_path / "environments" / f"{packages_hash()}.txt"
    assert stored.read_text().splitlines() == list(packages())
    save_environment(tmp_path, {"type": "started"})  # no list: nothing happens
    assert [p.name for p in (tmp_path / "environments").iterdir()] == [stored.name]


def test_the_project_commit_joins_the_worker_provenance():
    record = {"trial": "t0000", "provenance": {"packages": "abc"}}
    stamped = with_project(record, {"commit": "c0ffee", "dirty": True, "diff_sha256": "d1ff"})
    assert stamped["provenance"] == {"packages": "abc", "commit": "c0ffee", "diff_sha256": "d1ff"}
    assert with_project(record, None) is record


def test_worker_containers_name_their_image_and_trials_record_it(monkeypatch):
    from mlframework.cluster.services import worker_specs

    code = {"project": "/p", "source": "/s"}
    for gpus in ([], ["0", "1"]):
        for spec in worker_specs("exp", "exp-worker:3f2a", "amqp://x", "h1", gpus, cpu_slots=2, code_paths=code):
            assert spec.environment["MLFRAMEWORK_IMAGE"] == "exp-worker:3f2a"
    monkeypatch.setenv("MLFRAMEWORK_IMAGE", "exp-worker:3f2a")
    assert worker_provenance(None)["image"] == "exp-worker:3f2a"
