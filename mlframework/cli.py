"""The ``mlframework`` command: thin wrappers over the library API.

Errors a user can fix (a bad grid, a missing file, an unreachable broker)
print one line and exit with status 2; anything unexpected keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from mlframework import __version__
from mlframework.exceptions import MLFrameworkError

EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"mlframework: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


class _Group(click.Group):
    """Turns MLFrameworkError into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MLFrameworkError as exc:
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlframework")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Hyperparameter sweeps across the machines you can reach over SSH."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command("params")
@click.argument("parameters_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects instead of option lines.")
@click.option("--count", is_flag=True, help="Print only the number of combinations (computed, not expanded).")
def params_command(parameters_file: Path, as_json: bool, count: bool) -> None:
    """Print every combination of PARAMETERS_FILE, one per line, as the options a trial gets."""
    from mlframework.sweep.params import load_grid, render_options

    grid = load_grid(parameters_file)
    if count:
        click.echo(str(grid.count))
    elif as_json:
        out = sys.stdout
        out.write("[")
        for index, combination in enumerate(grid):
            out.write(("," if index else "") + "\n  " + json.dumps(combination))
        out.write("\n]\n" if grid.count else "]\n")
    else:
        from shlex import join

        for combination in grid:
            click.echo(join(render_options(combination)))


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


@cli.command("sweep")
@click.argument("project_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option(
    "-p",
    "--parameters",
    "parameters_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Grid to sweep  [default: PROJECT_DIR/parameters.yml]",
)
@click.option("--task", "task_name", default="train", show_default=True, help="Task of the project's tasks.py to run.")
@click.option(
    "--results",
    "results_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Directory that receives <sweep-id>/.",
)
@click.option("--metric", help="Metric that ranks trials  [default: the first one reported, accuracy preferred]")
@click.option("--mode", type=click.Choice(["max", "min"]), help="Whether a larger or smaller metric is better.")
@click.option("--dry-run", is_flag=True, help="Print the trials that would be sent, send nothing.")
@click.option("--local", is_flag=True, help="Embedded mode: no server, local worker processes.")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes with --local  [default: CPUs]")
@click.option(
    "--gpus",
    help="With --local: one worker per GPU, e.g. 0,1 or all (trials see their GPU as device 0); "
    "--workers is then trials at a time per GPU  [default: 1]",
)
@click.option("--broker", "broker_url", envvar="MLFRAMEWORK_BROKER_URL", help="Broker URL of a running cluster.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Re-run a failed trial up to N times, on another worker when there is one.",
)
@click.option(
    "--max-starts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="A trial whose worker died this many times while running it is recorded FAILURE.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Most trials one message carries when trials are short (1: one trial per message).",
)
@click.option(
    "--resume",
    "resume_id",
    metavar="SWEEP_ID",
    help="Finish an interrupted sweep of RESULTS (no PROJECT_DIR): trials recorded are not run again.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Run the driver on the cluster's master and return: follow it with `mlframework follow ID`, "
    "get its results with `mlframework fetch ID`.",
)
@click.option("--sweep-id", help="Id of the new sweep  [default: generated, e.g. 20261125-101500-mnist-3f2a]")
@click.option("--show-output", is_flag=True, help="Print every trial's output live, prefixed by trial and host.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-trial lines; summary only.")
def sweep_command(
    project_dir: Path,
    parameters_file: Path | None,
    task_name: str,
    results_root: Path,
    metric: str | None,
    mode: str | None,
    dry_run: bool,
    local: bool,
    workers: int | None,
    gpus: str | None,
    broker_url: str | None,
    retries: int,
    max_starts: int,
    max_batch: int,
    resume_id: str | None,
    detach: bool,
    sweep_id: str | None,
    show_output: bool,
    quiet: bool,
) -> None:
    """Run one trial per combination of the grid on the workers, and record them all.

    Results go to RESULTS/<sweep-id>/: results.csv, trials.jsonl, logs/. Exit
    status 0 when every trial succeeded, 1 when any failed, 2 for bad input.
    """
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver import SweepSpec, check_sweep_id, resume_sweep, run_sweep
    from mlframework.sweep.params import load_grid
    from mlframework.ui import SweepConsole

    console = SweepConsole(show_output=show_output, quiet=quiet)
    if local and broker_url:
        raise ConfigError("--local and --broker exclude each other")
    if (workers is not None or gpus is not None) and not local:
        raise ConfigError("--workers and --gpus only apply with --local")
    if resume_id:
        if project_dir is not None or parameters_file is not None or dry_run:
            raise ConfigError(
                "--resume takes the project, grid and options of the sweep it resumes: "
                "give no PROJECT_DIR, -p or --dry-run"
            )
        project_dir = _resumed_project(results_root, resume_id)
    elif project_dir is None:
        raise ConfigError("give a PROJECT_DIR (or --resume SWEEP_ID)")
    if not project_dir.is_dir():
        raise ConfigError(f"{project_dir}: project directory not found")
    if not resume_id:
        grid = load_grid(parameters_file or project_dir / "parameters.yml")
        if sweep_id is not None:
            check_sweep_id(sweep_id)
        spec = SweepSpec(
            project_dir,
            grid,
            task_name,
            results_root,
            metric,
            mode,
            sweep_id=sweep_id,
            retries=retries,
            max_starts=max_starts,
            max_batch=max_batch,
        )
        if dry_run:
            console.print_dry_run(spec)
            return
    if detach:
        given_broker = click.get_current_context().get_parameter_source("broker_url") == ParameterSource.COMMANDLINE
        if local or given_broker or resume_id:
            raise ConfigError("--detach runs on the cluster of config.sh: not with --local, --broker or --resume")
        options = [
            "--task",
            task_name,
            "--retries",
            str(retries),
            "--max-starts",
            str(max_starts),
            "--max-batch",
            str(max_batch),
        ]
        options += ["--metric", metric] if metric else []
        options += ["--mode", mode] if mode else []
        _detach(project_dir, spec, options)
        return

    def drive(broker: Any, local_mode: bool, health_check: Any = None) -> Any:
        if resume_id:
            return resume_sweep(
                results_root, resume_id, broker, console, resend_in_flight=local_mode, health_check=health_check
            )
        return run_sweep(spec, broker, console, health_check=health_check)

    if local:
        from mlframework.cluster.gpus import parse_gpu_option
        from mlframework.cluster.local import EmbeddedCluster

        with EmbeddedCluster(project_dir, workers=workers, gpus=parse_gpu_option(gpus)) as cluster:
            outcome = drive(cluster.broker, True, cluster.check)
    else:
        broker = _broker_from_options(broker_url)
        if broker is None:
            raise ConfigError("no broker: start a cluster (scripts/infrainit.sh), pass --broker URL, or use --local")
        outcome = drive(broker, False)
    sys.exit(outcome.exit_status)


def _detach(project_dir: Path, spec: Any, sweep_options: list[str]) -> None:
    from mlframework.cli_cluster import cluster_ssh_options, repo_root
    from mlframework.cluster.bootstrap import load_cluster
    from mlframework.cluster.detached import start_detached
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver import check_task, new_sweep_id

    root = repo_root()
    cluster, _ = load_cluster(root)
    if project_dir.resolve() != cluster.project_dir(root).resolve():
        raise ConfigError(
            f"{project_dir}: the cluster serves {cluster.project_dir(root)} (config.sh PROJECT); "
            "detached sweeps run that project"
        )
    check_task(project_dir.resolve(), spec.task)
    sweep_id = spec.sweep_id or new_sweep_id(project_dir.resolve().name)
    master = start_detached(root, cluster_ssh_options(cluster), sweep_id, Path(spec.grid.source), sweep_options)
    click.echo(f"sweep {sweep_id}: {spec.grid.count} trial(s), driver running on {master}")
    click.echo(f"follow it:   mlframework follow {sweep_id}")
    click.echo(f"its results: mlframework fetch {sweep_id}   (into ./results/{sweep_id})")


def _resumed_project(results_root: Path, sweep_id: str) -> Path:
    """The project directory recorded in RESULTS/SWEEP_ID/sweep.json."""
    from mlframework.exceptions import SweepError

    meta_path = results_root / sweep_id / "sweep.json"
    try:
        return Path(json.loads(meta_path.read_text(encoding="utf-8"))["project"])
    except FileNotFoundError:
        raise SweepError(f"{meta_path.parent}: no sweep {sweep_id!r} here (check --results)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SweepError(f"{meta_path}: not a sweep record ({exc})") from None


def _register_cluster_commands() -> None:
    from mlframework.cli_cluster import COMMANDS

    for command in COMMANDS:
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
