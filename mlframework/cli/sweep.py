"""The ``mlframework sweep`` command: parse its options, run or resume the sweep, and stop it on Ctrl-C.

The library calls are :func:`mlframework.sweep.driver.run.run_sweep` and
:func:`~mlframework.sweep.driver.run.resume_sweep`; ``--local`` wraps them in an
embedded cluster, ``--detach`` starts the driver on the cluster's master.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from mlframework.cli.common import (
    DURATION,
    RESULTS_HELP_RECEIVES,
    broker_option,
    require_broker,
    resolve_sweep,
    results_option,
    resume_command,
)
from mlframework.cli.sweep_options import (
    SweepOptions,
    check_combination,
    recorded_objectives,
    spec_from_options,
    spec_options,
)
from mlframework.sweep.driver.spec import SweepObserver

if TYPE_CHECKING:
    from mlframework.cli.console import SweepConsole
    from mlframework.cluster.embedded.workers import EmbeddedCluster
    from mlframework.sweep.driver.spec import SweepOutcome, SweepSpec
    from mlframework.sweep.wire.app import BrokerSettings


@click.command("sweep")
@click.argument("project_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option(
    "-p",
    "--parameters",
    "parameters_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Grid (or search space) to sweep  [default: PROJECT_DIR/parameters.yml]",
)
@click.option(
    "--task",
    "task_name",
    default="train",
    show_default=True,
    help="Task of the project's tasks.py to run (the name of the parameters file's command, when it gives one).",
)
@results_option(RESULTS_HELP_RECEIVES)
@click.option(
    "--metric",
    multiple=True,
    metavar="NAME[:max|:min]",
    help="Metric that ranks trials  [default: the first one reported, accuracy preferred]; given twice or more "
    "(e.g. --metric accuracy:max --metric latency_ms:min), the objectives of a Pareto front.",
)
@click.option("--mode", type=click.Choice(["max", "min"]), help="Whether a larger or smaller metric is better.")
@click.option(
    "--constraint",
    multiple=True,
    metavar="NAME<VALUE",
    help="A bound a trial must keep to be the best or on the front (<, <=, >, >=; repeatable), "
    "e.g. --constraint 'memory_mb<8000'.",
)
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
@broker_option()
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
    type=DURATION,
    metavar="DURATION",
    help="Stop a trial's command after DURATION (90, 90s, 30m, 2h): recorded FAILURE, retried with --retries.",
)
@click.option(
    "--share",
    type=click.FloatRange(min=0.01, max=1000),
    default=1.0,
    show_default=True,
    help="Weight of this sweep among the live sweeps of the cluster: --share 3 holds three times the slots "
    "of a sweep of share 1 while both have trials to run.",
)
@click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Live sweeps of a higher priority get the free slots first (running trials are never stopped).",
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
    type=click.Choice(["random", "tpe", "cmaes", "grid", "qmc", "bohb"]),
    help="The sampler of a search (--trials N, --metric NAME): sample the space of the parameters file instead of "
    "running every combination  [default: bohb; tpe with several --metric unpruned]",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    help="Search: run N trials (pruned ones included) sampled by --search, instead of every combination.",
)
@click.option("--seed", type=int, help="In a search: seed of the sampler, for a repeatable search.")
@click.option(
    "--timeout",
    "search_timeout",
    type=DURATION,
    metavar="DURATION",
    help="In a search: ask no new trial after DURATION (90s, 30m, 2h).",
)
@click.option(
    "--prune",
    type=click.Choice(["median", "hyperband", "asha", "none"]),
    default="none",
    show_default=True,
    help="In a search: stop trials whose metrics.log values fall behind (SIGTERM, SIGKILL 10 s later); "
    "hyperband suits the default bohb.",
)
@click.option("--prune-metric", help="With --prune: the metric it watches  [default: --metric]")
@click.option("--sweep-id", help="Id of the new sweep  [default: generated, e.g. 20261125-101500-mnist-3f2a]")
@click.option("--show-output", is_flag=True, help="Print every trial's output live, prefixed by trial and host.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-trial lines; summary only.")
def sweep_command(**given: Any) -> None:
    """Run one trial per combination of the grid on the workers, and record them all.

    With --trials N (and --metric), a search instead: N trials sampled from the
    parameters file's ranges and lists by --search (default bohb).

    Results go to RESULTS/<sweep-id>/: results.csv, trials.jsonl, logs/. Exit
    status 0 when every trial succeeded, 1 when any failed, 2 for bad input.
    Ctrl-C of a sweep on a cluster, in a terminal, asks whether to cancel its
    trials there or leave them running for --resume (exit status 130).
    """
    from mlframework.cli.console import SweepConsole

    options = SweepOptions(**given)
    check_combination(options)
    spec: SweepSpec | None = None
    if options.resume_id:
        options = _resumed(options)
    else:
        spec = spec_from_options(options)
    console = SweepConsole(
        show_output=options.show_output,
        quiet=options.quiet,
        resume_command=lambda sweep_id: resume_command(
            sweep_id, options.results_root, options.local, options.workers, options.gpus
        ),
    )
    if spec is not None and options.dry_run:
        from mlframework.sweep.driver.run import check_parameters, check_task
        from mlframework.sweep.trials.tasks import REGISTERED

        check_task(Path(spec.project_dir).resolve(), spec.task, spec.command)  # commands as its script takes them
        check_parameters(spec)
        console.print_dry_run(spec, spec.command or REGISTERED.get(spec.task))
        return
    if options.detach:
        if options.local or _given("broker_url") or spec is None:
            from mlframework.exceptions import ConfigError

            raise ConfigError("--detach runs on the cluster of config.sh: not with --local, --broker or --resume")
        _detach(spec)
        return
    sys.exit(_run(options, spec, console))


def _given(name: str) -> bool:
    """Whether the option ``name`` (click's parameter name) was typed on the command line."""
    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def _resumed(options: SweepOptions) -> SweepOptions:
    """--resume: the sweep's id resolved, what the command also gives checked against its record, its project."""
    from dataclasses import replace

    from mlframework.sweep.records.catalog import read_meta

    assert options.resume_id is not None
    sweep_id = resolve_sweep(options.results_root, options.resume_id)
    if options.project_dir is not None:  # the original command with --resume added: it must match the record
        from mlframework.sweep.driver.resume_match import check_matches

        given = {"task": options.task_name, "retries": options.retries, "max_starts": options.max_starts}
        given |= {"max_batch": options.max_batch, **recorded_objectives(options)}
        check_matches(options.results_root, sweep_id, options.project_dir, options.parameters_file, given)
    project = Path(read_meta(options.results_root / sweep_id)["project"])  # a damaged one: one line, exit 2
    if not project.is_dir():
        from mlframework.exceptions import ConfigError

        raise ConfigError(f"{project}: project directory not found")
    return replace(options, resume_id=sweep_id, project_dir=project)


class _NoteSweep(SweepObserver):
    """Tells the embedded cluster's watchdog which sweep.json to mark should the driver die."""

    def __init__(self, cluster: EmbeddedCluster) -> None:
        self.cluster = cluster

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        self.cluster.note_sweep(directory / "sweep.json")


def _run(options: SweepOptions, spec: SweepSpec | None, console: SweepConsole) -> int:
    """Run (or resume) the sweep on an embedded cluster or the broker's; its exit status."""
    from mlframework.cli.stop import StopSignals, offer_cancel
    from mlframework.report.live import LiveReportObserver
    from mlframework.sweep.driver.run import resume_sweep, run_sweep
    from mlframework.sweep.driver.spec import Observers

    def drive(broker: BrokerSettings, local_mode: bool, *extra: SweepObserver, health_check: Any = None) -> Any:
        observer = Observers([console, LiveReportObserver(), *extra])
        if spec is None:
            assert options.resume_id is not None
            return resume_sweep(
                options.results_root,
                options.resume_id,
                broker,
                observer,
                resend_in_flight=local_mode,
                health_check=health_check,
                share=options.share if _given("share") else None,
                priority=options.priority if _given("priority") else None,
            )
        return run_sweep(spec, broker, observer, health_check=health_check)

    broker: BrokerSettings | None = None
    with StopSignals() as stop:
        try:
            if options.local:
                assert options.project_dir is not None
                outcome = _drive_local(options, spec, console, drive)
            else:
                broker = require_broker(options.broker_url)
                outcome = drive(broker, False)
        except KeyboardInterrupt:
            if console.sweep_id is None:
                click.echo("mlframework: interrupted before the sweep started; nothing was recorded", err=True)
            elif (
                not options.local
            ):  # Ctrl-C in a terminal: cancel the trials on the cluster, or leave them for --resume
                offer_cancel(stop, options.results_root, console.sweep_id, broker)
            return stop.exit_status
    return int(outcome.exit_status)


def _drive_local(
    options: SweepOptions, spec: SweepSpec | None, console: SweepConsole, drive: Callable[..., SweepOutcome]
) -> SweepOutcome:
    """The sweep on an embedded cluster that lives exactly as long as it (see cluster/embedded/workers.py)."""
    from mlframework.cluster.embedded.workers import EmbeddedCluster
    from mlframework.cluster.gpus import parse_gpu_option
    from mlframework.exceptions import ServiceError
    from mlframework.sweep.driver.preflight import check_importable
    from mlframework.sweep.driver.run import check_task

    assert options.project_dir is not None
    # Its workers run this very Python: a tasks.py that does not import here fails there too.
    if (options.project_dir / "tasks.py").is_file():
        check_importable(options.project_dir)
    if spec is not None:  # before any worker starts: no tasks.py and no command in the file, or both give it
        check_task(Path(options.project_dir).resolve(), spec.task, spec.command)
    with EmbeddedCluster(options.project_dir, workers=options.workers, gpus=parse_gpu_option(options.gpus)) as cluster:
        search = spec.search if spec is not None else None
        if search is not None:  # embedded mode knows its slots: a search keeps each one busy
            search.settings.parallel = sum(worker.concurrency for worker in cluster.local_workers)
        try:
            return drive(cluster.broker, True, _NoteSweep(cluster), health_check=cluster.check)
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


def _detach(spec: SweepSpec) -> None:
    """Start the sweep's driver on the cluster's master, with the options that give this very spec."""
    from mlframework.cli.common import cluster_ssh_options, repo_root
    from mlframework.cluster.config_file import find_project
    from mlframework.cluster.detached import start_detached
    from mlframework.cluster.recorded import load_cluster
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.driver.run import check_task
    from mlframework.sweep.driver.spec import sweep_total
    from mlframework.sweep.wire.ids import new_sweep_id

    project_dir = Path(spec.project_dir)
    root = repo_root()
    cluster, _ = load_cluster(root)
    if project_dir.resolve() != find_project(cluster, root).resolve():
        raise ConfigError(
            f"{project_dir}: the cluster serves {find_project(cluster, root)} (config.sh PROJECT); "
            "detached sweeps run that project"
        )
    check_task(project_dir.resolve(), spec.task, spec.command)
    sweep_id = spec.sweep_id or new_sweep_id(project_dir.resolve().name)
    source = Path(spec.parameters.source)
    master = start_detached(root, cluster_ssh_options(cluster), sweep_id, source, spec_options(spec))
    click.echo(f"sweep {sweep_id}: {sweep_total(spec)} trial(s), driver running on {master}")
    click.echo(f"follow it:   mlframework follow {sweep_id}")
    click.echo(f"its results: mlframework fetch {sweep_id}   (into ./results/{sweep_id})")
