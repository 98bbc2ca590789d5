"""The ``mlframework sweep`` command: parse its options, run or resume the sweep, and stop it on Ctrl-C.

The library calls are :func:`mlframework.sweep.driver.run.run_sweep` and
:func:`~mlframework.sweep.driver.run.resume_sweep`; ``--local`` wraps them in an
embedded cluster, ``--detach`` starts the driver on the cluster's master.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from mlframework import envvars


@click.command("sweep")
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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the trials that would be sent (as the task renders their options), send nothing.",
)
@click.option("--local", is_flag=True, help="Embedded mode: no server, local worker processes.")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes with --local  [default: CPUs]")
@click.option(
    "--gpus",
    help="With --local: one worker per GPU, e.g. 0,1 or all (trials see their GPU as device 0); "
    "--workers is then trials at a time per GPU  [default: 1]",
)
@click.option("--broker", "broker_url", envvar=envvars.BROKER_URL, help="Broker URL of a running cluster.")
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
    "--trial-timeout",
    metavar="DURATION",
    help="Stop a trial's command after DURATION (90, 90s, 30m, 2h): recorded FAILURE, retried with --retries.",
)
@click.option(
    "--resume",
    "resume_id",
    metavar="SWEEP_ID",
    help="Finish an interrupted sweep of RESULTS: trials recorded are not run again. Alone, or added to the "
    "original command (PROJECT_DIR, -p and options must then match the sweep's record).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Run the driver on the cluster's master and return: follow it with `mlframework follow ID`, "
    "get its results with `mlframework fetch ID`.",
)
@click.option(
    "--search",
    "search_name",
    type=click.Choice(["random", "tpe", "cmaes", "grid", "qmc"]),
    help="Sample the space of the parameters file instead of running every combination (needs --metric).",
)
@click.option("--trials", type=click.IntRange(min=1), help="With --search: trials to run, pruned ones included.")
@click.option("--seed", type=int, help="With --search: seed of the sampler, for a repeatable search.")
@click.option("--timeout", "search_timeout", help="With --search: ask no new trial after DURATION (90s, 30m, 2h).")
@click.option(
    "--prune",
    type=click.Choice(["median", "hyperband", "asha", "none"]),
    default="none",
    show_default=True,
    help="With --search: stop trials whose metrics.log values fall behind (SIGTERM, SIGKILL 10 s later).",
)
@click.option("--prune-metric", help="With --prune: the metric it watches  [default: --metric]")
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
    trial_timeout: str | None,
    resume_id: str | None,
    detach: bool,
    search_name: str | None,
    trials: int | None,
    seed: int | None,
    search_timeout: str | None,
    prune: str,
    prune_metric: str | None,
    sweep_id: str | None,
    show_output: bool,
    quiet: bool,
) -> None:
    """Run one trial per combination of the grid on the workers, and record them all.

    Results go to RESULTS/<sweep-id>/: results.csv, trials.jsonl, logs/. Exit
    status 0 when every trial succeeded, 1 when any failed, 2 for bad input.
    Ctrl-C of a sweep on a cluster, in a terminal, asks whether to cancel its
    trials there or leave them running for --resume (exit status 130).
    """
    from mlframework.cli.console import SweepConsole
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver.run import check_parameters, check_task, resume_sweep, run_sweep
    from mlframework.sweep.driver.spec import SweepSpec
    from mlframework.sweep.params.grid_file import load_grid
    from mlframework.sweep.wire.ids import check_sweep_id

    console = SweepConsole(show_output=show_output, quiet=quiet)
    if local and broker_url:
        raise ConfigError("--local and --broker exclude each other")
    if (workers is not None or gpus is not None) and not local:
        raise ConfigError("--workers and --gpus only apply with --local")
    if resume_id:
        if dry_run or (project_dir is None and parameters_file is not None):
            raise ConfigError(
                "--resume takes the grid of the sweep it resumes: no --dry-run, no -p without PROJECT_DIR"
            )
        if project_dir is not None:  # the original command with --resume added: it must match the record
            from mlframework.sweep.driver.resume_match import check_matches

            given = {"task": task_name, "retries": retries, "max_starts": max_starts, "max_batch": max_batch}
            check_matches(
                results_root,
                resume_id,
                project_dir,
                parameters_file,
                {**given, "requested_metric": metric, "requested_mode": mode},
            )
        project_dir = _resumed_project(results_root, resume_id)
    elif project_dir is None:
        raise ConfigError("give a PROJECT_DIR (or --resume SWEEP_ID)")
    if not project_dir.is_dir():
        raise ConfigError(f"{project_dir}: project directory not found")
    search = _search_settings(search_name, trials, seed, search_timeout, prune, prune_metric, metric, resume_id)
    if not resume_id:
        grid: Any = (
            load_grid(parameters_file or project_dir / "parameters.yml")
            if search is None
            else _load_space(parameters_file or project_dir / "parameters.yml")
        )
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
            trial_timeout=_duration(trial_timeout),
            search=search,
        )
        if search is not None and search.sampler == "grid":
            grid.grid_space()  # a continuous parameter cannot be listed: say so before anything starts
        if dry_run:
            check_task(project_dir.resolve(), task_name)  # its trials' commands are shown as its script takes them
            check_parameters(spec)
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
        options += ["--trial-timeout", trial_timeout] if trial_timeout else []
        options += ["--metric", metric] if metric else []
        options += ["--mode", mode] if mode else []
        if search is not None:
            options += ["--search", search.sampler, "--trials", str(search.trials), "--prune", search.prune]
            options += ["--seed", str(seed)] if seed is not None else []
            options += ["--timeout", search_timeout] if search_timeout else []
            options += ["--prune-metric", prune_metric] if prune_metric else []
        _detach(project_dir, spec, options)
        return

    def drive(broker: Any, local_mode: bool, health_check: Any = None) -> Any:
        if resume_id:
            return resume_sweep(
                results_root, resume_id, broker, console, resend_in_flight=local_mode, health_check=health_check
            )
        return run_sweep(spec, broker, console, health_check=health_check)

    from mlframework.cli.stop import StopSignals, offer_cancel

    console.resume_command = _resume_command(results_root, local, workers, gpus)
    broker: Any = None
    with StopSignals() as stop:
        try:
            if local:
                outcome = _drive_local(project_dir, workers, gpus, console, drive, search)
            else:
                from mlframework.cli.main import _broker_from_options

                broker = _broker_from_options(broker_url)
                if broker is None:
                    raise ConfigError(
                        "no broker: start a cluster (scripts/infrainit.sh), pass --broker URL, or use --local"
                    )
                outcome = drive(broker, False)
        except KeyboardInterrupt:
            if console.sweep_id is None:
                click.echo("mlframework: interrupted before the sweep started; nothing was recorded", err=True)
            elif not local:  # Ctrl-C in a terminal: cancel the trials on the cluster, or leave them for --resume
                offer_cancel(stop, results_root, console.sweep_id, broker)
            sys.exit(stop.exit_status)
    sys.exit(outcome.exit_status)


def _duration(text: str | None) -> float | None:
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.trials.trial_env import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(f"--trial-timeout {text}: give a duration such as 90, 90s, 30m or 2h") from None


def _drive_local(
    project_dir: Path, workers: int | None, gpus: str | None, console: Any, drive: Any, search: Any = None
) -> Any:
    """The sweep on an embedded cluster that lives exactly as long as it (see cluster/embedded/workers.py)."""
    from mlframework.cluster.embedded.workers import EmbeddedCluster
    from mlframework.cluster.gpus import parse_gpu_option
    from mlframework.exceptions import ServiceError
    from mlframework.sweep.driver.preflight import check_importable

    # Its workers run this very Python: a tasks.py that does not import here fails there too.
    check_importable(project_dir)
    with EmbeddedCluster(project_dir, workers=workers, gpus=parse_gpu_option(gpus)) as cluster:
        console.on_sweep_started = lambda directory: cluster.note_sweep(directory / "sweep.json")
        if search is not None:  # embedded mode knows its slots: a search keeps each one busy
            search.parallel = sum(worker.concurrency for worker in cluster.local_workers)
        try:
            return drive(cluster.broker, True, cluster.check)
        except ServiceError:
            # The workers never came up: a sweep directory with nothing in it would only mislead.
            _remove_if_empty(console.directory)
            raise


def _remove_if_empty(directory: Path | None) -> None:
    """Remove a sweep directory in which no trial was recorded."""
    import shutil

    if directory is None or not directory.is_dir():
        return
    trials = directory / "trials.jsonl"
    if not trials.exists() or trials.stat().st_size == 0:
        shutil.rmtree(directory, ignore_errors=True)


def _resume_command(results_root: Path, local: bool, workers: int | None, gpus: str | None) -> Any:
    """How to resume a sweep of this command, from any directory: ``sweep_id -> command line``."""
    from shlex import join

    options = ["--results", str(results_root.resolve())]
    if local:
        options.append("--local")
        options += ["--workers", str(workers)] if workers is not None else []
        options += ["--gpus", gpus] if gpus is not None else []

    def command(sweep_id: str) -> str:
        return join(["mlframework", "sweep", "--resume", sweep_id, *options])

    return command


def _detach(project_dir: Path, spec: Any, sweep_options: list[str]) -> None:
    from mlframework.cli.cluster import cluster_ssh_options, repo_root
    from mlframework.cluster.config_file import find_project
    from mlframework.cluster.detached import start_detached
    from mlframework.cluster.recorded import load_cluster
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver.run import check_task
    from mlframework.sweep.wire.ids import new_sweep_id

    root = repo_root()
    cluster, _ = load_cluster(root)
    if project_dir.resolve() != find_project(cluster, root).resolve():
        raise ConfigError(
            f"{project_dir}: the cluster serves {find_project(cluster, root)} (config.sh PROJECT); "
            "detached sweeps run that project"
        )
    check_task(project_dir.resolve(), spec.task)
    sweep_id = spec.sweep_id or new_sweep_id(project_dir.resolve().name)
    master = start_detached(root, cluster_ssh_options(cluster), sweep_id, Path(spec.grid.source), sweep_options)
    from mlframework.sweep.driver.spec import sweep_total

    click.echo(f"sweep {sweep_id}: {sweep_total(spec)} trial(s), driver running on {master}")
    click.echo(f"follow it:   mlframework follow {sweep_id}")
    click.echo(f"its results: mlframework fetch {sweep_id}   (into ./results/{sweep_id})")


def _search_settings(
    search_name: str | None,
    trials: int | None,
    seed: int | None,
    timeout: str | None,
    prune: str,
    prune_metric: str | None,
    metric: str | None,
    resume_id: str | None,
) -> Any:
    """The SearchSettings of --search and its options, or None for a grid sweep."""
    from mlframework.exceptions import ConfigError

    if search_name is None:
        given = [name for name, value in (("--trials", trials), ("--seed", seed), ("--timeout", timeout)) if value]
        given += ["--prune"] if prune != "none" else []
        given += ["--prune-metric"] if prune_metric else []
        if given and not resume_id:
            raise ConfigError(f"{', '.join(given)} only apply with --search")
        return None
    if resume_id:
        raise ConfigError("--resume continues the search it resumes: give no --search")
    if not metric:
        raise ConfigError("--search needs --metric NAME: the metric the search optimises (e.g. --metric accuracy)")
    if trials is None:
        raise ConfigError("--search needs --trials N: how many trials to run")
    from mlframework.sweep.search.study import SearchSettings, parse_duration

    return SearchSettings(
        search_name,
        trials,
        seed,
        parse_duration(timeout) if timeout else None,
        prune,
        prune_metric,
    )


def _load_space(path: Path) -> Any:
    from mlframework.sweep.params.space import load_space

    return load_space(path)


def _resumed_project(results_root: Path, sweep_id: str) -> Path:
    """The project directory recorded in RESULTS/SWEEP_ID/sweep.json (a damaged one: one line, exit 2)."""
    from mlframework.sweep.records.catalog import read_meta

    return Path(read_meta(results_root / sweep_id)["project"])
