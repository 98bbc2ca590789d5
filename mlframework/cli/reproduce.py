"""The ``mlframework reproduce`` command: one recorded trial run again, and what changed since."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mlframework.cli.common import broker_option, check_local_options, require_broker, resolve_sweep, results_option


@click.command("reproduce")
@click.argument("sweep_id")
@click.argument("trial")
@results_option("Directory that holds <sweep-id>/ (the new sweep goes there too).")
@click.option("--local", is_flag=True, help="Embedded mode: no server, a local worker process.")
@click.option("--gpus", help="With --local: the GPU(s) to run it on, e.g. 0 (as `sweep --gpus`).")
@broker_option()
@click.option("--sweep-id", "new_id", help="Id of the new sweep  [default: generated]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-trial lines; summary only.")
def reproduce_command(
    sweep_id: str,
    trial: str,
    results_root: Path,
    local: bool,
    gpus: str | None,
    broker_url: str | None,
    new_id: str | None,
    quiet: bool,
) -> None:
    """Run TRIAL (t0003, or 3) of SWEEP_ID again, same project, task and parameters, as a new sweep.

    Then says whether the project's commit or local changes, the worker's
    Python packages, image, GPU or driver differ from the original trial's.
    Exit status 0 when the trial succeeded, 1 when it failed, 2 for bad input.
    """
    from mlframework.cli.console import SweepConsole
    from mlframework.report.live import LiveReportObserver
    from mlframework.sweep.driver.reproduce import new_record, plan_reproduction, provenance_changes
    from mlframework.sweep.driver.run import run_sweep
    from mlframework.sweep.driver.spec import Observers, SweepSpec
    from mlframework.sweep.params.grid_file import load_grid

    check_local_options(local, broker_url, None, gpus)
    sweep_id = resolve_sweep(results_root, sweep_id)
    meta, original, grid_file, new_id = plan_reproduction(results_root, sweep_id, trial, new_id)
    project_dir = Path(meta["project"])
    spec = SweepSpec(
        project_dir,
        load_grid(grid_file),
        meta["task"],
        results_root,
        meta.get("requested_metric"),
        meta.get("requested_mode"),
        sweep_id=new_id,
        max_starts=int(meta.get("max_starts") or 3),
    )
    click.echo(f"trial {original.get('trial')} of {sweep_id} ({original.get('status')}) runs again as sweep {new_id}")
    console = Observers([SweepConsole(quiet=quiet), LiveReportObserver()])  # report.html as for any sweep
    outcome: Any
    if local:
        from mlframework.cluster.embedded.workers import EmbeddedCluster
        from mlframework.cluster.gpus import parse_gpu_option

        with EmbeddedCluster(project_dir, workers=1, gpus=parse_gpu_option(gpus)) as cluster:
            outcome = run_sweep(spec, cluster.broker, console, health_check=cluster.check)
    else:
        outcome = run_sweep(spec, require_broker(broker_url), console)
    if not outcome.records:
        sys.exit(outcome.exit_status)
    again = new_record(outcome.directory)
    if not original.get("provenance"):
        click.echo(f"trial {original.get('trial')} of {sweep_id} has no provenance recorded: nothing to compare")
    else:
        changes = provenance_changes(original, again)
        for what, before, after in changes:
            click.echo(f"differs: {what}: {before or '(none)'} -> {after or '(none)'}")
        if not changes:
            click.echo("same project commit, local changes, packages, image and GPU as the original")
    click.echo(f"original {original.get('status')}, now {again.get('status')}; metrics now {again.get('metrics')}")
    sys.exit(outcome.exit_status)
