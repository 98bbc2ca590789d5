"""Subcommands over recorded sweeps: ls, show, report, export, cancel.

Each reads the results directory only (:mod:`mlframework.sweep.records.catalog`), calls one library
function and prints; a damaged sweep directory is one line (exit 2), never a traceback.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import webbrowser
from pathlib import Path
from typing import Any

import click

from mlframework.cli.common import (
    broker_from_options,
    broker_option,
    recorded_resume_command,
    resolve_sweep,
    results_option,
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def _started(value: Any) -> str:
    try:
        return _dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "?"


def _best(summary: dict[str, Any]) -> str:
    if summary.get("front") is not None:  # several objectives: the size of the Pareto front
        return f"front of {len(summary['front'])} ({', '.join(summary['objectives'])})"
    if summary["best"] is None:
        return "-"
    value = summary["best"]
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{summary['metric']}={shown} ({summary['best_trial']})"


@click.command("ls")
@results_option()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per sweep.")
def ls_command(results_root: Path, as_json: bool) -> None:
    """List the sweeps of RESULTS, newest first: status, trials done/failed/pruned, best metric."""
    from rich.console import Console
    from rich.table import Table

    from mlframework.sweep.records.catalog import list_sweeps

    listings = list_sweeps(results_root)
    if as_json:
        rows = [
            listing.sweep.summary() if listing.sweep else {"id": listing.directory.name, "error": listing.error}
            for listing in listings
        ]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not listings:
        click.echo(f"no sweeps in {results_root}")
        return
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(box=None, pad_edge=False)
    for column in ("sweep", "project", "kind", "status", "done/failed/pruned of total", "best", "started", "took"):
        table.add_column(column)
    for listing in listings:
        if listing.sweep is None:
            table.add_row(listing.directory.name, "", "", "damaged", f"{listing.error}", "", "", "")
            continue
        s = listing.sweep.summary()
        status = s["status"] + (f" ({s['status_note']})" if s["status_note"] else "")
        counts = f"{s['done']}/{s['failed']}/{s['pruned']} of {s['total']}"
        table.add_row(
            s["id"],
            s["project"],
            s["kind"],
            status,
            counts,
            _best(s),
            _started(s["started"]),
            _duration(s["duration_s"]),
        )
    console.print(table)


@click.command("show")
@click.argument("sweep_id")
@results_option()
def show_command(sweep_id: str, results_root: Path) -> None:
    """The summary of sweep SWEEP_ID again: the ranked table (or the Pareto front), the best trial, the failures."""
    from rich.text import Text

    from mlframework.cli.console import SweepConsole, failure_tail
    from mlframework.statuses import SUCCESS
    from mlframework.sweep.driver.spec import SweepOutcome
    from mlframework.sweep.records.catalog import FINAL_STATES, find_sweep

    sweep = find_sweep(results_root, resolve_sweep(results_root, sweep_id))
    summary = sweep.summary()
    view = SweepConsole(quiet=True)
    note = f" ({sweep.status_note})" if sweep.status_note else ""
    view.console.print(
        f"sweep {sweep.id}: {sweep.meta.get('project')} ({sweep.kind}), {sweep.status}{note}; "
        f"{summary['done']} done, {summary['failed']} failed, {summary['pruned']} pruned of {summary['total']}; "
        f"started {sweep.meta.get('created_at')}, took {_duration(summary['duration_s'])}",
        markup=False,
        soft_wrap=True,
    )
    failures = [r for r in sweep.records if r.get("status") not in (SUCCESS, "PRUNED")]
    for record in failures:
        line = Text(f"{record.get('trial')} ")
        line.append(str(record.get("status")), style="bold red")
        line.append(f" {record.get('host')}: {record.get('error') or 'no reason recorded'}", style="red")
        view.console.print(line, soft_wrap=True)
        # The traceback's end first, then the last stdout lines: fewer than live, there may be many failures.
        for stream, text in failure_tail(record, stderr_lines=8, stdout_lines=3):
            view.console.print(Text(f"  {text}", style="red" if stream == "stderr" else "dim"), soft_wrap=True)
    outcome = SweepOutcome(
        sweep.id,
        sweep.directory,
        sweep.total,
        sweep.records,
        sweep.metric,
        sweep.mode,
        interrupted=sweep.status != "finished",
        status=sweep.status if sweep.status in FINAL_STATES else "",  # as `ls` says it
        objectives=sweep.objectives,
        constraints=sweep.constraints,
        search=_search_words(sweep.meta.get("search")),
    )
    view.print_summary(outcome, elapsed=summary["duration_s"] or 0.0)


def _search_words(recorded: object) -> str:
    """The search sweep.json records, in words (its sampler and pruner); "" for a grid or an unreadable record."""
    from mlframework.exceptions import ConfigError
    from mlframework.sweep.search.plan import SearchSettings

    if not isinstance(recorded, dict):
        return ""
    try:
        return SearchSettings.from_meta(recorded).describe()
    except (ConfigError, TypeError):
        return ""


@click.command("report")
@click.argument("sweep_id")
@results_option()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write  [default: RESULTS/SWEEP_ID/report.html]",
)
@click.option(
    "--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), help="Also write each figure as a PNG here."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
def report_command(
    sweep_id: str, results_root: Path, output: Path | None, png_dir: Path | None, open_browser: bool
) -> None:
    """Write a self-contained HTML report of sweep SWEEP_ID (no server, works offline).

    Best trials (sortable), the metric against each parameter, parallel coordinates, parameter
    importance, learning curves (pruned and failed trials marked) and each worker slot's timeline
    with its busy fraction. Rerun it at any time while the sweep runs (the driver also keeps
    RESULTS/<id>/report.html current; MLFRAMEWORK_LIVE_REPORT=0 turns that off).
    """
    from mlframework.report.make import write_report
    from mlframework.sweep.records.catalog import find_sweep

    written = write_report(find_sweep(results_root, resolve_sweep(results_root, sweep_id)), output, png_dir)
    if written.html is not None:
        click.echo(f"report: {written.html} ({written.seconds:.1f}s)")
    for path in written.pngs:
        click.echo(f"figure: {path}")
    if open_browser and written.html is not None:
        webbrowser.open(written.html.resolve().as_uri())


@click.command("export")
@click.argument("sweep_id")
@results_option()
@click.option(
    "--mlflow",
    "tracking_uri",
    required=True,
    metavar="TRACKING_URI",
    help="MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000.",
)
@click.option("--experiment", help="MLflow experiment  [default: the project's name]")
def export_command(sweep_id: str, results_root: Path, tracking_uri: str, experiment: str | None) -> None:
    """Export sweep SWEEP_ID to MLflow: a parent run, one nested run per trial (again: nothing new)."""
    from mlframework.sweep.records.catalog import find_sweep
    from mlframework.sweep.records.export_mlflow import export_sweep

    sweep = find_sweep(results_root, resolve_sweep(results_root, sweep_id))
    done = export_sweep(sweep, tracking_uri, experiment)
    click.echo(
        f"exported sweep {sweep.id} to {tracking_uri} (experiment {done.experiment!r}, parent run {done.parent_run}): "
        f"{done.created} trial run(s) created, {done.existing} already there"
    )


@click.command("cancel")
@click.argument("sweep_id")
@results_option()
@broker_option("Broker URL of the cluster's sweep.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL of a running trial.",
)
def cancel_command(sweep_id: str, results_root: Path, broker_url: str | None, grace: float) -> None:
    """Cancel sweep SWEEP_ID: queued trials never run, running ones stop, its driver ends; records stay.

    The sweep is marked cancelled and can be resumed (mlframework sweep --resume SWEEP_ID).
    """
    from mlframework.sweep.driver.cancel import cancel_sweep, is_embedded
    from mlframework.sweep.records.catalog import read_meta

    sweep_id = resolve_sweep(results_root, sweep_id, missing_ok=True)  # not here: a detached sweep, by --broker
    directory = results_root / sweep_id
    meta = read_meta(directory) if directory.exists() else None
    broker = None if is_embedded(meta) else broker_from_options(broker_url)
    done = cancel_sweep(results_root, sweep_id, broker, grace=grace)
    stopped = sum(len(trials) for trials in done.stopped.values())
    click.echo(f"cancelled sweep {sweep_id}: {done.driver}")
    if broker is not None:
        click.echo(f"queued trials are dropped by the workers; {stopped} running trial(s) stopped")
    click.echo(f"resume it: {recorded_resume_command(results_root, sweep_id)}")


COMMANDS = [ls_command, show_command, report_command, export_command, cancel_command]
