"""The ``mlframework`` command: thin wrappers over the library API.

Errors a user can fix (a bad grid, a missing file, an unreachable broker)
print one line (and, indented under it, the tail of their cause: a worker's
log, a traceback in tasks.py) and exit with status 2; anything unexpected
keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from mlframework import __version__
from mlframework.cli.common import fail
from mlframework.exceptions import MLFrameworkError


class _Group(click.Group):
    """Turns MLFrameworkError into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MLFrameworkError as exc:
            fail(str(exc) or type(exc).__name__)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlframework")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Hyperparameter sweeps across the machines you can reach over SSH."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register_cluster_commands() -> None:
    from mlframework.cli.cluster import COMMANDS
    from mlframework.cli.sweep import sweep_command
    from mlframework.cli.sweeps import COMMANDS as SWEEP_COMMANDS  # ls, show, report, export, cancel

    for command in [sweep_command, *COMMANDS, *SWEEP_COMMANDS]:
        cli.add_command(command)
    from mlframework.cli.reproduce import reproduce_command

    cli.add_command(reproduce_command)
    from mlframework.cli.params import params_command

    cli.add_command(params_command)


_register_cluster_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlframework`` console script; returns the exit status."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="mlframework", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
