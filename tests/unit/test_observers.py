"""Observers of a sweep: several as one (the console and the live report), and the live report's end."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mlframework.cli.console import SweepConsole
from mlframework.report import live
from mlframework.report.live import LiveReport, LiveReportObserver
from mlframework.sweep.driver.spec import Observers, SweepObserver, SweepOutcome
from mlframework.sweep.params.arguments import SEED_STYLE, ArgumentStyle


class Recorder(SweepObserver):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        self.calls.append("sweep_started")

    def trial_started(self, event: dict[str, Any]) -> None:
        self.calls.append("trial_started")

    def trial_output(self, trial: str, host: str, stream: str, line: str) -> None:
        self.calls.append(f"output {line}")

    def trial_finished(self, record: dict[str, Any]) -> None:
        self.calls.append("trial_finished")

    def trial_retried(self, attempt: dict[str, Any], retries: int) -> None:
        self.calls.append("trial_retried")

    def trial_metrics(self, trial: str, host: str, history: list[dict[str, Any]]) -> None:
        self.calls.append("trial_metrics")

    def idle(self) -> None:
        self.calls.append("idle")

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        self.calls.append("sweep_finished")


def test_observers_forward_every_hook_to_each_in_order(tmp_path):
    first, second, silent = Recorder(), Recorder(), SweepObserver()
    group = Observers([first, silent, second])
    assert group.watches_output and not silent.watches_output
    style = ArgumentStyle(separate=True, spread_lists=True)
    group.argument_style = style
    assert first.argument_style is style and second.argument_style is style and group.argument_style is style
    assert SweepObserver.argument_style is SEED_STYLE, "the default stays the seed's"
    group.sweep_started("s", 1, tmp_path)
    group.trial_started({"trial": "t0"})
    group.trial_output_lines("t0", "h", "stdout", ["a", "b"])
    group.trial_metrics("t0", "h", [])
    group.trial_retried({"trial": "t0"}, 1)
    group.trial_finished({"trial": "t0"})
    group.idle()
    group.sweep_finished(SweepOutcome("s", tmp_path, 1, []))
    expected = ["sweep_started", "trial_started", "output a", "output b", "trial_metrics", "trial_retried"]
    expected += ["trial_finished", "idle", "sweep_finished"]
    assert first.calls == expected and second.calls == expected


def sleeping(report: LiveReport) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(30)"]


def test_an_interrupt_stops_the_render_at_once_and_starts_no_final_one(tmp_path, monkeypatch):
    monkeypatch.setenv(live.ENV_SWITCH, "1")
    monkeypatch.setattr(LiveReport, "_command", sleeping)
    observer = LiveReportObserver(min_interval=0.0)
    observer.sweep_started("s", 2, tmp_path)
    observer.trial_finished({"trial": "t0"})
    observer.idle()  # a render starts
    report = observer.report
    assert report is not None and report._child is not None
    child = report._child
    began = time.monotonic()
    observer.sweep_finished(SweepOutcome("s", tmp_path, 2, [], interrupted=True, status="interrupted", signalled=True))
    assert child.poll() is not None, "the render was stopped"
    assert time.monotonic() - began < 1.5, "the command does not wait for the render"
    assert report._child is None, "no final render was started"


def test_a_sweep_that_ends_gets_a_final_render(tmp_path, monkeypatch):
    monkeypatch.setenv(live.ENV_SWITCH, "1")
    monkeypatch.setattr(LiveReport, "_command", sleeping)
    observer = LiveReportObserver()
    observer.sweep_started("s", 1, tmp_path)
    report = observer.report
    assert report is not None
    observer.sweep_finished(SweepOutcome("s", tmp_path, 1, [], interrupted=True, status="cancelled"))
    assert report._child is not None and report._child.poll() is None, "the final state is rendered"
    report._stop_child(wait=1)


def test_a_cancelled_sweep_ends_with_the_word_ls_shows_and_how_to_resume_it():
    buffer = io.StringIO()
    ui = SweepConsole(
        console=Console(file=buffer, width=200),
        resume_command=lambda sweep_id: f"mlframework sweep --resume {sweep_id} --local",
    )
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 3, [], interrupted=True, status="cancelled"), elapsed=1.0)
    last = buffer.getvalue().splitlines()
    assert last[-2].startswith("sweep s1 cancelled in 1.0s")
    assert last[-1] == "resume it: mlframework sweep --resume s1 --local"


def test_the_summary_of_a_search_names_its_sampler_and_pruner():
    from mlframework.sweep.search.plan import SearchSettings

    buffer = io.StringIO()
    ui = SweepConsole(console=Console(file=buffer, width=200))
    words = SearchSettings(sampler="bohb", trials=6, prune="hyperband").describe()
    ui.print_summary(SweepOutcome("s1", Path("/r/s1"), 6, [], search=words), elapsed=2.0)
    assert (
        buffer.getvalue()
        .splitlines()[-1]
        .startswith("sweep s1 finished in 2.0s (a bohb search, pruned by hyperband): ")
    )
    assert SearchSettings(sampler="tpe", trials=3).describe() == "a tpe search, no pruning"
