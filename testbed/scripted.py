"""Running the user-facing scripts (scripts/*.sh, ./infra_clean.sh) against the test hosts.

The scripts run in a copy of the repository, so that the config.sh,
infra_clean.sh and secrets file they write never touch the checkout, and with
the test run's own virtual environment (MLFRAMEWORK_VENV), so that nothing is
reinstalled from the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from testbed.testhosts import TestHostCluster

REPO = Path(__file__).resolve().parents[1]
COPIED = ("mlframework", "projects", "infra", "scripts", "setup.cfg", "pyproject.toml", "README.md", "config.sh")


def copy_repo(target: Path) -> Path:
    """A copy of what a user's checkout holds (no results, caches or secrets) at ``target``."""
    target.mkdir(parents=True)
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
        else:
            shutil.copy2(source, target / name)
    return target


def script_env(hosts: TestHostCluster, build_daemon_host: str) -> dict[str, str]:
    """The environment of a user on this machine: their known_hosts, their Docker daemon (for ``ship``)."""
    return {
        **os.environ,
        "MLFRAMEWORK_VENV": str(REPO / ".venv"),
        "MLFRAMEWORK_KNOWN_HOSTS": str(hosts.known_hosts),
        "DOCKER_HOST": build_daemon_host,  # this machine's daemon: --image-source ship builds here
        "COLUMNS": "200",
    }


def run(repo: Path, *argv: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a script in the copy; stdout and stderr as text."""
    return subprocess.run(
        list(argv), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
