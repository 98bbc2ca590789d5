"""What --show-output and the summary draw: lines coalesced and counted when too many, missing metrics named."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from mlframework.cli.console import DISPLAY_LINES, SweepConsole
from mlframework.sweep.driver.spec import SweepOutcome


def console_on(buffer: io.StringIO, **options) -> SweepConsole:
    return SweepConsole(console=Console(file=buffer, width=200, highlight=False), **options)


def test_a_flood_of_output_is_drawn_in_part_and_the_rest_counted():
    buffer = io.StringIO()
    ui = console_on(buffer, show_output=True)
    ui.sweep_started("s1", 1, Path("/r/s1"))
    lines = [f"line {i}" for i in range(10_000)]
    ui.trial_output_lines("t0000", "h", "stdout", lines)
    ui.idle()
    shown = buffer.getvalue().splitlines()[1:]
    assert shown[:2] == ["[t0000 h] line 0", "[t0000 h] line 1"]
    assert len(shown) == DISPLAY_LINES + 1
    assert f"{10_000 - DISPLAY_LINES} line(s) not shown" in shown[-1] and "/r/s1/logs" in shown[-1]


def test_a_metric_no_trial_reports_is_named_with_those_they_do():
    buffer = io.StringIO()
    ui = console_on(buffer)
    records = [{"trial": "t0000", "status": "SUCCESS", "index": 0, "params": {}, "metrics": {"accuracy": 0.9}}]
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 1, records, metric="acc", mode="max"))
    assert "no trial reported the metric 'acc'" in buffer.getvalue()
    assert "the trials reported: accuracy" in buffer.getvalue()


def test_several_objectives_print_the_front_and_name_an_objective_no_trial_reports():
    from mlframework.sweep.records.objectives import Objective

    buffer = io.StringIO()
    ui = console_on(buffer)
    records = [
        {"trial": f"t000{i}", "status": "SUCCESS", "index": i, "params": {"w": i}, "metrics": metrics}
        for i, metrics in enumerate([{"acc": 0.9, "ms": 0.0}, {"acc": 0.8, "ms": 5.0}, {"acc": 0.95, "ms": 9.0}])
    ]
    objectives = (Objective("acc", "max"), Objective("ms", "min"))
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 3, records, "acc", "max", objectives=objectives))
    assert "Pareto front: 2 trial(s): t0002, t0000;" in buffer.getvalue()
    assert "warning" not in buffer.getvalue(), "a latency of 0.0 is reported"
    missing = (*objectives, Objective("size_mb", "min"))
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 3, records, "acc", "max", objectives=missing))
    assert "no trial reported the objective(s) 'size_mb', so no front; the trials reported: acc, ms" in (
        buffer.getvalue()
    )


def test_an_interrupted_sweep_ends_with_the_command_that_resumes_it():
    buffer = io.StringIO()
    ui = console_on(buffer, resume_command=lambda sweep_id: f"mlframework sweep --resume {sweep_id} --local")
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 3, [], interrupted=True))
    assert buffer.getvalue().splitlines()[-1] == "resume it: mlframework sweep --resume s1 --local"


def test_a_failure_shows_its_traceback_first_then_its_last_output():
    buffer = io.StringIO()
    ui = console_on(buffer, quiet=True)
    ui.sweep_started("s1", 1, Path("/r/s1"))
    ui.trial_output_lines("t0000", "h", "stderr", ["Traceback (most recent call last):", "ValueError: bad key"])
    ui.trial_output_lines("t0000", "h", "stdout", [f"config {i}" for i in range(30)])
    ui.trial_finished(
        {
            "trial": "t0000",
            "status": "FAILURE",
            "host": "h",
            "error": "exit code 1",
            "stderr_tail": ["Traceback (most recent call last):", "ValueError: bad key"],
            "stdout_tail": [f"config {i}" for i in range(10, 30)],
        }
    )
    shown = [line.strip() for line in buffer.getvalue().splitlines()[2:]]
    assert shown[:2] == ["[t0000 h] Traceback (most recent call last):", "[t0000 h] ValueError: bad key"]
    assert shown[2:] == [f"[t0000 h] config {i}" for i in range(25, 30)]


def test_the_summary_says_which_metric_it_ranked_by_and_lists_the_others():
    buffer = io.StringIO()
    ui = console_on(buffer)
    metrics = {"train loss": 2.1, "val loss": 2.2, "loss": 2.0}
    records = [{"trial": "t0000", "status": "SUCCESS", "index": 0, "params": {}, "metrics": metrics}]
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 1, records, metric="val loss", mode="min"))
    assert "ranked by val loss (min); other metrics seen: train loss, loss" in buffer.getvalue()
