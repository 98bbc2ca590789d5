"""The ``mlframework`` command: thin wrappers over the library API.

Errors a user can fix (a bad grid, a missing file, an unreachable broker)
print one line (and, indented under it, the tail of their cause: a worker's
log, a traceback in tasks.py) and exit with status 2; anything unexpected
keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from mlframework import __version__
from mlframework.exceptions import MLFrameworkError

EXIT_USAGE = 2


CAUSE_LINES = 15  # of an error's cause (a worker's log, a traceback), shown under its first line


def _fail(message: str) -> None:
    """The error's first line, then the last lines of its cause (if it carries one) indented; exit 2."""
    first, *cause = message.splitlines() or [""]
    click.echo(f"mlframework: error: {first}", err=True)
    for line in cause[-CAUSE_LINES:]:
        click.echo(f"  | {line}", err=True)
    sys.exit(EXIT_USAGE)


class _Group(click.Group):
    """Turns MLFrameworkError into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MLFrameworkError as exc:
            _fail(str(exc) or type(exc).__name__)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlframework")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Hyperparameter sweeps across the machines you can reach over SSH."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command("params")
@click.argument("parameters_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON array of objects instead of option lines (inf, -inf, nan as strings).",
)
@click.option("--count", is_flag=True, help="Print only the number of combinations (computed, not expanded).")
def params_command(parameters_file: Path, as_json: bool, count: bool) -> None:
    """Print every combination of PARAMETERS_FILE, one per line, as the options a trial gets.

    A search space (a file with !uniform, !loguniform, !int or conditional
    choices) is described instead: each parameter and its distribution.
    """
    from mlframework.sweep.arguments import display, json_safe
    from mlframework.sweep.params import load_grid, render_options
    from mlframework.sweep.space import is_search_space, load_space

    if is_search_space(parameters_file):
        space = load_space(parameters_file)
        for line in space.describe():
            click.echo(line)
        return
    grid = load_grid(parameters_file)
    if count:
        click.echo(str(grid.count))
    elif as_json:
        out = sys.stdout
        out.write("[")
        for index, combination in enumerate(grid):
            # Infinities and NaN as the strings "inf", "-inf" and "nan": strict JSON has no such numbers.
            out.write(("," if index else "") + "\n  " + json.dumps(json_safe(combination), allow_nan=False))
        out.write("\n]\n" if grid.count else "]\n")
    else:
        for combination in grid:
            click.echo(display(render_options(combination)))


def _broker_from_options(broker_url: str | None) -> Any:
    """--broker / MLFRAMEWORK_BROKER_URL, else the cluster infrainit recorded, else None."""
    from mlframework.cli_cluster import repo_root
    from mlframework.cluster.bootstrap import cluster_broker
    from mlframework.cluster.spec import CONFIG_FILE, load_config
    from mlframework.sweep.app import BrokerSettings

    if broker_url:
        return BrokerSettings(url=broker_url)
    root = repo_root()
    config = root / CONFIG_FILE
    if config.exists() and any(load_config(config).get(key) for key in ("MASTER", "BROKER")):
        return cluster_broker(root)
    return None


def _register_cluster_commands() -> None:
    from mlframework.cli_cluster import COMMANDS
    from mlframework.cli_sweep import sweep_command
    from mlframework.cli_sweeps import COMMANDS as SWEEP_COMMANDS  # ls, show, report, export, cancel

    for command in [sweep_command, *COMMANDS, *SWEEP_COMMANDS]:
        cli.add_command(command)
    from mlframework.cli_reproduce import reproduce_command

    cli.add_command(reproduce_command)


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
