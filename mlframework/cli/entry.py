"""The seed's entry modules (`test_echo.py`, `run_training.py`) in one call each, over the CLI.

``scripts/run_tasks.sh NAME`` runs the project's module ``NAME.py``; a project's
modules only say which project they belong to::

    # projects/mnist/run_training.py
    from mlframework.cli.entry import run_training
    run_training(__file__)

Extra command-line arguments are options of ``mlframework sweep`` (``--local``,
``--results DIR``, ``--metric NAME``, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mlframework.cli.main import main

ECHO_GRID = "echo.yml"


def _sweep(project_file: str, task: str, grid: str, extra: Sequence[str]) -> int:
    if any(arg == "--resume" or arg.startswith("--resume=") for arg in extra):
        return main(["sweep", *extra])  # the resumed sweep knows its project, grid and task
    project = Path(project_file).resolve().parent
    return main(["sweep", str(project), "--task", task, "-p", str(project / grid), *extra])


def test_echo(project_file: str, argv: Sequence[str] | None = None) -> None:
    """Run the ``echo`` task for each combination of the project's ``echo.yml``, output streamed live."""
    extra = list(sys.argv[1:] if argv is None else argv)
    sys.exit(_sweep(project_file, "echo", ECHO_GRID, ["--show-output", *extra]))


def run_training(project_file: str, argv: Sequence[str] | None = None) -> None:
    """Run the ``train`` task for every combination of the project's ``parameters.yml``; record the results."""
    sys.exit(_sweep(project_file, "train", "parameters.yml", list(sys.argv[1:] if argv is None else argv)))


# Not a test, whatever pytest's collection thinks of the name.
test_echo.__test__ = False  # type: ignore[attr-defined]
