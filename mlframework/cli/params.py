"""The ``mlframework params`` command: a grid's combinations as the options each trial gets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mlframework.sweep.params.settings import FileCommand


@click.command("params")
@click.argument("parameters_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON array of objects instead of option lines (inf, -inf, nan as strings).",
)
@click.option("--count", is_flag=True, help="Print only the number of combinations (computed, not expanded).")
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Show the options as this project's task renders them (train_task(arguments=...): "
    "--name value, --name=False, Hydra's name=value, ...; a command_task's whole command line); "
    "imports its tasks.py. A file that gives its command (mlframework: command:) shows that command line  "
    "[default: the seed's --name=value]",
)
@click.option("--task", "task_name", default="train", show_default=True, help="The task of --project.")
def params_command(parameters_file: Path, as_json: bool, count: bool, project_dir: Path | None, task_name: str) -> None:
    """Print every combination of PARAMETERS_FILE, one per line, as the options a trial gets.

    A search space (a file with !uniform, !loguniform, !int or conditional
    choices) is described instead: each parameter and its distribution.
    """
    from mlframework.sweep.params.arguments import SEED_STYLE, display, false_warning, json_safe, style_of
    from mlframework.sweep.params.command import command_line, parameter_values, template_of
    from mlframework.sweep.params.grid_file import load_grid
    from mlframework.sweep.params.settings import load_command
    from mlframework.sweep.params.space import is_search_space, load_space
    from mlframework.sweep.wire.ids import trial_id

    command = load_command(parameters_file)  # the file's own command (mlframework: section), if it gives one
    if is_search_space(parameters_file):
        space = load_space(parameters_file)
        for line in space.describe():
            click.echo(line)
        if command is not None:
            click.echo(f"each trial runs: {display(command.template.words)}")
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
        function = _project_task(project_dir, task_name, command) if project_dir is not None else command
        style = style_of(function) if function is not None else SEED_STYLE
        if function is None and any(isinstance(value, list) for p in grid.parameters for value in _few(p.values)):
            click.echo(
                "mlframework: list values are shown as one JSON argument each (the default style); "
                "with --project DIR they are shown as that project's task passes them",
                err=True,
            )
        if template_of(function) is not None:
            # A command task: each trial's whole command ({trial_dir}, {gpu}, ... are known when it runs).
            for index, combination in enumerate(grid):
                click.echo(command_line(function, combination, {"trial": trial_id(index, grid.count)}))
        else:
            for combination in grid:
                click.echo(display(style.render(combination)))
        warning = false_warning(style, parameter_values(grid), in_file=command is not None and function is command)
        if warning:
            click.echo(f"mlframework: warning: {warning}", err=True)


def _few(values: object) -> list[object]:
    """The values of a parameter given as a tuple (an interval holds numbers only)."""
    return list(values) if isinstance(values, tuple) else []


def _project_task(project_dir: Path, task_name: str, command: FileCommand | None) -> object:
    """The project's task function (its tasks.py imported as the driver imports it), or the file's ``command``."""
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver.preflight import check_importable
    from mlframework.sweep.driver.run import check_task
    from mlframework.sweep.trials import tasks as task_registry

    if command is not None:
        check_task(project_dir.resolve(), task_name, command)  # a tasks.py that defines the task too: refused
        return command
    check_importable(project_dir)
    function = task_registry.REGISTERED.get(task_name)
    if function is None:
        known = ", ".join(sorted(task_registry.REGISTERED)) or "none"
        raise ConfigError(f"{project_dir / 'tasks.py'}: no task named '{task_name}' (defined: {known})")
    return function
