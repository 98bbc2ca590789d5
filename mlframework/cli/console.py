"""What a person sees while a sweep runs: progress, trial lines, live output, summary.

Rendering only; the driver reports through the :class:`SweepObserver` hooks.
rich draws the progress bar and tables; when stdout is not a terminal (CI
logs, a pipe) it prints plain lines and no bar.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mlframework.statuses import PRUNED, SUCCESS
from mlframework.sweep.driver.spec import SweepObserver, SweepOutcome, SweepSpec
from mlframework.sweep.params.arguments import display, false_warning, format_value, style_of
from mlframework.sweep.params.command import command_line, parameter_values, template_of
from mlframework.sweep.records.objectives import feasible
from mlframework.sweep.records.ranking import metrics_seen
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.wire.ids import trial_id

SUMMARY_ROWS = 10
FAILED_OUTPUT_LINES = 20
# A failed trial's tail: its last stderr lines (the traceback) first, then its last stdout lines.
FAILURE_STDERR_LINES = 15
FAILURE_STDOUT_LINES = 5
# --show-output draws at most this many lines per window, in one write: a terminal cannot show more to be
# read, and drawing every line of a chatty script held the whole sweep back. The logs keep every line.
DISPLAY_LINES = 40
DISPLAY_WINDOW = 0.1  # seconds


def failure_tail(
    record: TrialRecord,
    recent: Iterable[str] = (),
    stderr_lines: int = FAILURE_STDERR_LINES,
    stdout_lines: int = FAILURE_STDOUT_LINES,
) -> list[tuple[str, str]]:
    """``(stream, line)`` to show under a failed trial: stderr's last lines first, then stdout's.

    From the record's ``stderr_tail``/``stdout_tail`` (each stream's own tail, so a
    traceback is never pushed out by what the script printed on stdout meanwhile);
    ``recent`` (its last output lines as they arrived) when the record has neither.
    """
    stderr = list(record.get("stderr_tail") or [])[-stderr_lines:]
    stdout = list(record.get("stdout_tail") or [])[-stdout_lines:]
    if not stderr and not stdout:
        return [("stdout", line) for line in recent]
    return [("stderr", line) for line in stderr] + [("stdout", line) for line in stdout]


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class SweepConsole(SweepObserver):
    """Draws a sweep on the terminal."""

    def __init__(
        self,
        show_output: bool = False,
        quiet: bool = False,
        console: Console | None = None,
        resume_command: Callable[[str], str] | None = None,
    ) -> None:
        """``resume_command``: sweep id -> the command that resumes it, printed under an unfinished sweep's summary."""
        self.console = console or Console(highlight=False)
        if not self.console.is_terminal and "COLUMNS" not in os.environ:
            # Logs and pipes have no width; 80 columns would truncate the summary table.
            self.console.width = 160
        self.show_output = show_output
        self.quiet = quiet
        self._progress: Progress | None = None
        self._bar: Any = None
        self._total = 0
        self._done = 0
        self._failed = 0
        self._pruned = 0
        self._running: set[str] = set()
        self._recent: dict[str, collections.deque[str]] = {}
        self._started = time.monotonic()
        self.sweep_id: str | None = None
        self.directory: Path | None = None
        self.resume_command = resume_command
        self._display: list[tuple[str, str, str, str]] = []  # output lines waiting to be drawn
        self._display_window = time.monotonic()
        self._skipped = 0  # output lines not drawn in this window

    def _options(self, params: dict[str, Any]) -> str:
        """A trial's options on one line, as its script gets them."""
        return display(self.argument_style.render(params))

    # -- driver hooks -------------------------------------------------------

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        self._total = total
        self._started = time.monotonic()
        self.sweep_id, self.directory = sweep_id, directory
        self.console.print(
            f"sweep {sweep_id}: {total} trial(s), recording to {directory}", markup=False, soft_wrap=True
        )
        if self.quiet or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._bar = self._progress.add_task("sweep", total=total, counts=self._counts())
        self._progress.start()

    def trial_started(self, event: dict[str, Any]) -> None:
        self._running.add(str(event.get("trial")))
        if event.get("redelivered") and not self.quiet:
            self.console.print(f"{event.get('trial')} redelivered, now on {event.get('host')}", markup=False)
        self._refresh()

    def trial_output(self, trial: str, host: str, stream: str, line: str) -> None:
        recent = self._recent.setdefault(trial, collections.deque(maxlen=FAILED_OUTPUT_LINES))
        recent.append(line)
        if not self.show_output:
            return
        if len(self._display) < DISPLAY_LINES:
            self._display.append((trial, host, stream, line))
        else:
            self._skipped += 1
        if time.monotonic() - self._display_window >= DISPLAY_WINDOW:
            self._draw_output()

    def trial_output_lines(self, trial: str, host: str, stream: str, lines: list[str]) -> None:
        # A chunk at a time, not a Python step per line: a chatty script prints hundreds of thousands.
        recent = self._recent.setdefault(trial, collections.deque(maxlen=FAILED_OUTPUT_LINES))
        recent.extend(lines[-FAILED_OUTPUT_LINES:])
        if not self.show_output:
            return
        room = max(0, DISPLAY_LINES - len(self._display))
        self._display.extend((trial, host, stream, line) for line in lines[:room])
        self._skipped += max(0, len(lines) - room)
        if time.monotonic() - self._display_window >= DISPLAY_WINDOW:
            self._draw_output()

    def _draw_output(self) -> None:
        """Draw the output lines of this window in one write, and how many were skipped."""
        self._display_window = time.monotonic()
        if not self._display and not self._skipped:
            return
        text = Text()
        for number, (trial, host, stream, line) in enumerate(self._display):
            if number:
                text.append("\n")
            text.append(f"[{trial} {host}] ", style="dim" if stream == "stdout" else "red")
            text.append(line)
        if self._skipped:
            where = self.directory / "logs" if self.directory else "the trial logs"
            text.append(("\n" if self._display else "") + f"[mlframework] {self._skipped} line(s) not shown ", "yellow")
            text.append(f"(too many to read; every line is in {where})", "yellow")
        self._display, self._skipped = [], 0
        self.console.print(text, soft_wrap=True)

    def trial_finished(self, record: TrialRecord) -> None:
        self._draw_output()
        trial = str(record["trial"])
        self._running.discard(trial)
        self._done += 1
        ok = record.get("status") == SUCCESS
        pruned = record.get("status") == PRUNED
        if pruned:
            self._pruned += 1
        elif not ok:
            self._failed += 1
        recent = self._recent.pop(trial, None)
        if not self.quiet or not ok:
            metrics = " ".join(f"{k}={_number(v)}" for k, v in (record.get("metrics") or {}).items())
            line = Text(f"{trial} ")
            line.append(record.get("status", "?"), style="green" if ok else "yellow" if pruned else "bold red")
            line.append(f" {record.get('host')} {_number(record.get('duration_s', 0.0))}s ")
            line.append(self._options(record.get("params") or {}))
            if metrics:
                line.append(f"  {metrics}", style="cyan")
            if not ok and not pruned and record.get("error"):
                line.append(f"  ({record['error']})", style="red")
            self.console.print(line, soft_wrap=True)
        if not ok and not pruned and not self.show_output:
            for stream, text in failure_tail(record, recent or ()):
                where = Text(f"  [{trial} {record.get('host')}] ", style="red" if stream == "stderr" else "dim")
                self.console.print(where + Text(text), soft_wrap=True)
        self._refresh()

    def trial_retried(self, attempt: dict[str, Any], retries: int) -> None:
        trial = str(attempt.get("trial"))
        self._running.discard(trial)
        number = int(attempt.get("attempt") or 1)
        line = Text(f"{trial} ")
        line.append("FAILURE", style="yellow")
        line.append(f" {attempt.get('host')}: {attempt.get('error')}; retry {number} of {retries} sent")
        self.console.print(line, soft_wrap=True)
        self._recent.pop(trial, None)
        self._refresh()

    def trial_metrics(self, trial: str, host: str, history: list[dict[str, Any]]) -> None:
        if not self.show_output:
            return
        for record in history:
            values = " ".join(f"{k}={_number(v)}" for k, v in (record.get("values") or {}).items())
            step = "" if record.get("step") is None else f"step {record['step']} "
            self.console.print(Text(f"[{trial} {host}] ", style="dim") + Text(step + values, style="cyan"))

    def idle(self) -> None:
        if self._display or self._skipped:
            self._draw_output()
        self._refresh()

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        self._draw_output()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.print_summary(outcome)

    # -- rendering ----------------------------------------------------------

    def _counts(self) -> str:
        pruned = f"  pruned {self._pruned}" if self._pruned else ""
        done = self._done - self._failed - self._pruned
        return f"done {done}  failed {self._failed}{pruned}  running {len(self._running)}"

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._bar, completed=self._done, counts=self._counts())

    def print_summary(self, outcome: SweepOutcome, elapsed: float | None = None) -> None:
        """The ranked table, the best parameters and where the results are (``elapsed``: the sweep's seconds)."""
        elapsed = time.monotonic() - self._started if elapsed is None else elapsed
        ranked = outcome.ranked()
        if outcome.objectives:
            self._print_front(outcome)
        elif ranked:
            title = f"best trials by {outcome.metric} ({outcome.mode})" if outcome.metric else "trials"
            table = Table(title=title, title_justify="left")
            for column in ("trial", "status", "host", "duration_s"):
                table.add_column(column)
            # Parameters that are the same in every trial are noise here (they stay in results.csv).
            param_names = [
                name
                for name in (ranked[0].get("params") or {})
                if len({json.dumps((r.get("params") or {}).get(name)) for r in ranked}) > 1
            ]
            for name in param_names:
                table.add_column(name)
            metric_names = [outcome.metric] if outcome.metric else []
            for name in metric_names:
                table.add_column(name, style="cyan")
            for record in ranked[:SUMMARY_ROWS]:
                params = record.get("params") or {}
                metrics = record.get("metrics") or {}
                table.add_row(
                    str(record["trial"]),
                    Text(str(record.get("status")), style="green" if record.get("status") == SUCCESS else "red"),
                    str(record.get("host")),
                    _number(record.get("duration_s")),
                    *(format_value(params[name]) if name in params else "" for name in param_names),
                    *(_number(metrics.get(name, "")) for name in metric_names),
                )
            self.console.print(table)
            best = ranked[0]
            best_value = (best.get("metrics") or {}).get(outcome.metric) if outcome.metric else None
            if (
                best.get("status") == SUCCESS
                and best_value is not None
                and feasible(best.get("metrics"), outcome.constraints)
            ):
                options = self._options(best.get("params") or {})
                self.console.print(
                    f"best: {outcome.metric}={_number(best_value)} in {best['trial']}: {options}",
                    markup=False,
                    soft_wrap=True,
                )
            if outcome.metric:
                others = [name for name in metrics_seen(outcome.records) if name != outcome.metric]
                self.console.print(
                    f"ranked by {outcome.metric} ({outcome.mode}); "
                    + (f"other metrics seen: {', '.join(others)}" if others else "no other metric seen")
                    + " (--metric NAME ranks by another)",
                    markup=False,
                    soft_wrap=True,
                )
        self._warn_missing_metric(outcome)
        searched = f" ({outcome.search})" if outcome.search else ""
        self.console.print(
            f"sweep {outcome.sweep_id} {outcome.ended} in {elapsed:.1f}s{searched}: {outcome.succeeded} succeeded, "
            f"{outcome.failed} failed, {f'{outcome.pruned} pruned, ' if outcome.pruned else ''}"
            f"{max(0, outcome.total - len(outcome.records))} not run; "
            f"results in {outcome.directory / 'results.csv'}",
            markup=False,
            soft_wrap=True,
        )
        unfinished = outcome.ended != "finished" and len(outcome.records) < outcome.total
        if unfinished and self.resume_command is not None:
            self.console.print(f"resume it: {self.resume_command(outcome.sweep_id)}", markup=False, soft_wrap=True)

    def _print_front(self, outcome: SweepOutcome) -> None:
        """A sweep with several objectives: its Pareto front (trials, their parameters and objective values)."""
        front = outcome.front()
        objectives = outcome.objectives
        described = ", ".join(str(objective) for objective in objectives)
        constrained = f" keeping {', '.join(map(str, outcome.constraints))}" if outcome.constraints else ""
        if not front:
            self.console.print(
                f"no Pareto front: no trial succeeded with every objective ({described}){constrained}",
                style="yellow",
                markup=False,
                soft_wrap=True,
            )
            return
        table = Table(title=f"Pareto front of {described}{constrained}", title_justify="left")
        for column in ("trial", "host", "duration_s"):
            table.add_column(column)
        param_names = [
            name
            for name in (front[0].get("params") or {})
            if len({json.dumps((r.get("params") or {}).get(name)) for r in outcome.records}) > 1
        ]
        for name in param_names:
            table.add_column(name)
        for objective in objectives:
            table.add_column(str(objective), style="cyan")
        for record in front[:SUMMARY_ROWS]:
            params = record.get("params") or {}
            table.add_row(
                str(record["trial"]),
                str(record.get("host")),
                _number(record.get("duration_s")),
                *(format_value(params[name]) if name in params else "" for name in param_names),
                *(_number(objective.value(record.get("metrics"))) for objective in objectives),
            )
        self.console.print(table)
        more = f" ({SUMMARY_ROWS} shown)" if len(front) > SUMMARY_ROWS else ""
        self.console.print(
            f"Pareto front: {len(front)} trial(s){more}: {', '.join(str(r['trial']) for r in front)}; "
            "no other trial is as good in every objective and better in one (results.csv: pareto_rank 1)",
            markup=False,
            soft_wrap=True,
        )

    def _warn_missing_metric(self, outcome: SweepOutcome) -> None:
        """One warning when no trial reported the metric asked for, naming those they did report."""
        if not outcome.metric or not outcome.records:
            return
        reported = sorted({name for record in outcome.records for name in (record.get("metrics") or {})})
        if outcome.objectives:
            metrics = [record.get("metrics") for record in outcome.records]
            missing = [o.name for o in outcome.objectives if all(o.value(values) is None for values in metrics)]
            if missing:
                self.console.print(
                    f"warning: no trial reported the objective(s) {', '.join(map(repr, missing))}, so no front; "
                    f"the trials reported: {', '.join(reported) if reported else 'none'}",
                    style="yellow",
                    markup=False,
                    soft_wrap=True,
                )
            return
        if outcome.metric in reported:
            return
        known = ", ".join(reported) if reported else "none"
        self.console.print(
            f"warning: no trial reported the metric {outcome.metric!r}, so none is ranked; "
            f"the trials reported: {known} (rank by one with --metric NAME)",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )

    def print_dry_run(self, spec: SweepSpec, task_function: object = None, limit: int = 1000) -> None:
        """List the trials a sweep would send, without sending them (a search: its space).

        ``task_function``: the project's task (tasks.py imported), whose argument style or command
        line shows each trial as its script gets it (the seed's ``--name=value`` when not given).
        """
        self.argument_style = style_of(task_function)
        what = f"task '{spec.task}'" if spec.command is None else "the command of the parameters file"
        search = spec.search
        if search is not None:
            self.console.print(
                f"dry run: a {search.settings.sampler} search of {search.settings.trials} trial(s) of {what} "
                f"over {search.space.source}:",
                markup=False,
                soft_wrap=True,
            )
            for line in search.space.describe():
                self.console.print(line, markup=False, soft_wrap=True)
            template = template_of(task_function)
            if template is not None:
                self.console.print(f"each trial runs: {display(template.words)}", markup=False, soft_wrap=True)
            self.warn_dropped_false(spec)
            return
        grid = spec.grid
        total = grid.count
        self.console.print(f"dry run: {total} trial(s) of {what} from {grid.source}", markup=False, soft_wrap=True)
        for index, combination in enumerate(grid):
            if index >= limit:
                self.console.print(f"... and {total - limit} more", markup=False, soft_wrap=True)
                break
            trial = trial_id(index, total)
            # A command task's whole command; {trial_dir}, {gpu}, ... are known when the trial runs.
            places = {"trial": trial, **({"sweep": spec.sweep_id} if spec.sweep_id else {})}
            line = command_line(task_function, combination, places)
            self.console.print(f"{trial} {line}", markup=False, soft_wrap=True)
        self.warn_dropped_false(spec)

    def warn_dropped_false(self, spec: SweepSpec) -> None:
        """One warning line when a false value leaves an option out (the default argument style)."""
        warning = false_warning(
            self.argument_style, parameter_values(spec.parameters), in_file=spec.command is not None
        )
        if warning:
            self.console.print(f"warning: {warning}", style="yellow", markup=False, soft_wrap=True)


def _eta(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def print_live_sweeps(sweeps: list[Any], console: Console | None = None) -> None:
    """The live sweeps of a cluster (``mlframework status``): who runs what, with which share, and what runs where."""
    console = console or Console(highlight=False)
    table = Table(title="live sweeps", title_justify="left")
    for column in ("sweep", "project", "owner", "share", "priority", "queued", "running", "done", "ETA"):
        table.add_column(column, justify="right" if column in ("share", "priority", "queued", "running") else "left")
    running: list[tuple[str, str, str, str, str, str]] = []
    for sweep in sweeps:
        table.add_row(
            str(sweep.get("sweep")),
            str(sweep.get("project")),
            str(sweep.get("owner")),
            f"{float(sweep.get('share') or 1):g}",
            str(sweep.get("priority") or 0),
            str(sweep.get("queued")),
            str(sweep.get("running")),
            f"{sweep.get('done')}/{sweep.get('total')}",
            _eta(sweep.get("eta_s")),
        )
        for trial in sweep.get("running_trials") or []:
            gpu = trial.get("gpu")
            running.append(
                (
                    str(trial.get("host")),
                    "-" if gpu in (None, "") else str(gpu),
                    str(sweep.get("project")),
                    str(sweep.get("sweep")),
                    str(trial.get("trial")),
                    str(trial.get("since")),
                )
            )
    console.print(table)
    if running:
        where = Table(title="running now", title_justify="left")
        for column in ("host", "GPU", "project", "sweep", "trial", "since (UTC)"):
            where.add_column(column)
        for row in sorted(running):
            where.add_row(*row)
        console.print(where)
