"""Imports run downhill: the import-linter contracts in pyproject.toml hold, and they catch an import that runs back up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_package_keeps_its_import_contracts():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_a_contract(tmp_path):
    shutil.copytree(REPO / "mlframework", tmp_path / "mlframework", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    grid = tmp_path / "mlframework" / "sweep" / "params" / "grid.py"
    grid.write_text(grid.read_text() + "\nfrom mlframework.sweep.driver import loop  # noqa: E402\n")
    command = tmp_path / "mlframework" / "cli" / "params.py"
    command.write_text(command.read_text() + "\nfrom mlframework.cli import main  # noqa: E402\n")

    result = _lint_imports(tmp_path)

    assert result.returncode != 0
    assert "mlframework.sweep.params.grid -> mlframework.sweep.driver.loop" in result.stdout
    assert "mlframework.cli.params is not allowed to import mlframework.cli.main" in result.stdout
