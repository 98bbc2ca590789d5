"""Provenance: what a trial ran with (project commit and diff, worker packages, host, GPU, image), kept small.

Each trial record gets a ``provenance`` mapping; what is large is stored once
in the sweep directory instead:

- worker side (:func:`worker_provenance`, cached per process): ``packages``,
  the sha256 of the sorted ``name==version`` list of the worker's Python
  distributions; ``hostname``, ``python``; ``gpu_model`` and ``gpu_driver``
  on a GPU worker; ``image`` when the worker runs in a container (the
  cluster passes it as ``MLFRAMEWORK_IMAGE``). The list itself travels once
  per sweep and worker process, in a trial's ``started`` event
  (:func:`environment_for`), and the driver writes it to
  ``environments/<hash>.txt`` (:func:`save_environment`).
- driver side (:func:`read_project_revision`): the project's git ``commit``,
  ``dirty``, and when dirty the sha256 of ``git diff HEAD`` (``diff_sha256``),
  the diff itself written once per sweep to ``project.diff``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from mlframework import envvars
from mlframework.sweep.trials.gpu_usage import gpu_model

log = logging.getLogger(__name__)

ENV_IMAGE = envvars.IMAGE  # the worker container's image, set in worker containers
ENVIRONMENTS_DIR = "environments"
PROJECT_DIFF = "project.diff"

_sent_environment: set[str] = set()  # sweeps this process has sent its package list to


# -- worker side ----------------------------------------------------------------


@functools.cache
def packages() -> tuple[str, ...]:
    """The sorted ``name==version`` of every Python distribution this process can import, computed once."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.add(f"{name}=={dist.version}")
    return tuple(sorted(found, key=str.lower))


@functools.cache
def packages_hash() -> str:
    """The sha256 of :func:`packages`, one per line (the name of ``environments/<hash>.txt``)."""
    return hashlib.sha256(_packages_text().encode()).hexdigest()


def _packages_text() -> str:
    return "".join(f"{line}\n" for line in packages())


def worker_provenance(gpu: str | None) -> dict[str, Any]:
    """The worker half of a trial's ``provenance`` (cheap after the first call in a process)."""
    found: dict[str, Any] = {
        "packages": packages_hash(),
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
    }
    if gpu:
        found.update(gpu_model(gpu))
    image = os.environ.get(ENV_IMAGE)
    if image:
        found["image"] = image
    return found


def environment_for(sweep_id: str) -> dict[str, Any]:
    """``{"environment": {"hash", "packages"}}`` for the first started event this process sends to a sweep, else {}.

    Once per sweep rather than once per process: a worker outlives sweeps, and
    each sweep directory keeps its own copy.
    """
    if sweep_id in _sent_environment:
        return {}
    _sent_environment.add(sweep_id)
    return {"environment": {"hash": packages_hash(), "packages": list(packages())}}


# -- driver side ----------------------------------------------------------------


def save_environment(directory: Path, event: Mapping[str, Any]) -> None:
    """Write the package list a started event carries to ``environments/<hash>.txt``, unless there already."""
    environment = event.get("environment")
    if not isinstance(environment, Mapping):
        return
    digest, listed = str(environment.get("hash") or ""), environment.get("packages")
    if not digest.isalnum() or not isinstance(listed, list):
        log.warning("ignoring a malformed package list from %s", event.get("worker"))
        return
    path = directory / ENVIRONMENTS_DIR / f"{digest}.txt"
    if path.exists():
        return
    text = "".join(f"{line}\n" for line in listed)
    if hashlib.sha256(text.encode()).hexdigest() != digest:
        log.warning("package list from %s does not match its hash %s: stored anyway", event.get("worker"), digest)
    path.parent.mkdir(exist_ok=True)
    partial = path.with_suffix(".txt.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


@dataclass(frozen=True)
class ProjectRevision:
    """The project's git state when a sweep started."""

    commit: str
    dirty: bool  # uncommitted changes (tracked or untracked files) under the project directory
    diff: str  # ``git diff HEAD`` of the project directory: tracked changes only, as W&B and MLflow keep it

    def as_dict(self) -> dict[str, Any]:
        """What sweep.json and each trial's provenance record (the diff as its sha256)."""
        found: dict[str, Any] = {"commit": self.commit, "dirty": self.dirty}
        if self.diff:
            found["diff_sha256"] = hashlib.sha256(self.diff.encode()).hexdigest()
        return found

    def save_diff(self, directory: Path) -> None:
        """Write the diff to ``project.diff`` in the sweep directory (nothing when clean)."""
        if self.diff:
            (directory / PROJECT_DIFF).write_text(self.diff, encoding="utf-8")


def _git(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=30)


def read_project_revision(project_dir: Path) -> ProjectRevision | None:
    """The git commit, dirtiness and diff of the project; None outside a git checkout or without git."""
    try:
        commit = _git(project_dir, "rev-parse", "HEAD")
        if commit.returncode != 0:
            return None
        status = _git(project_dir, "status", "--porcelain", "--", ".")
        diff = _git(project_dir, "diff", "HEAD", "--binary", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return ProjectRevision(commit.stdout.strip(), bool(status.stdout.strip()), diff.stdout)


_Record = TypeVar("_Record", bound=Mapping[str, Any])  # a trial's record (sweep/records/record.py)


def with_project(record: _Record, revision: Mapping[str, Any] | None) -> _Record:
    """``record`` with the project's commit (and diff hash) added to its ``provenance``."""
    if not revision:
        return record
    project = {key: revision[key] for key in ("commit", "diff_sha256") if key in revision}
    return cast(_Record, {**record, "provenance": {**(record.get("provenance") or {}), **project}})
