"""The ``mlframework params`` command: a grid's combinations as the options each trial gets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mlframework.sweep.params.arguments import ArgumentStyle


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
    "--name value, list values as several arguments, --no-name); imports its tasks.py  "
    "[default: the seed's --name=value]",
)
@click.option("--task", "task_name", default="train", show_default=True, help="The task of --project.")
def params_command(parameters_file: Path, as_json: bool, count: bool, project_dir: Path | None, task_name: str) -> None:
    """Print every combination of PARAMETERS_FILE, one per line, as the options a trial gets.

    A search space (a file with !uniform, !loguniform, !int or conditional
    choices) is described instead: each parameter and its distribution.
    """
    from mlframework.sweep.params.arguments import SEED_STYLE, display, json_safe
    from mlframework.sweep.params.grid_file import load_grid
    from mlframework.sweep.params.space import is_search_space, load_space

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
        style = _project_style(project_dir, task_name) if project_dir is not None else SEED_STYLE
        if project_dir is None and any(isinstance(value, list) for p in grid.parameters for value in _few(p.values)):
            click.echo(
                "mlframework: list values are shown as one JSON argument each (the default style); "
                "with --project DIR they are shown as that project's task passes them",
                err=True,
            )
        for combination in grid:
            click.echo(display(style.render(combination)))


def _few(values: object) -> list[object]:
    """The values of a parameter given as a tuple (an interval holds numbers only)."""
    return list(values) if isinstance(values, tuple) else []


def _project_style(project_dir: Path, task_name: str) -> ArgumentStyle:
    """The ArgumentStyle of the project's task (imported as the driver imports it)."""
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver.preflight import check_importable
    from mlframework.sweep.trials import tasks as task_registry

    check_importable(project_dir)
    function = task_registry.REGISTERED.get(task_name)
    if function is None:
        known = ", ".join(sorted(task_registry.REGISTERED)) or "none"
        raise ConfigError(f"{project_dir / 'tasks.py'}: no task named '{task_name}' (defined: {known})")
    return task_registry.argument_style(task_name)
