"""6. Live-output cost: a trial printing 10,000 lines, streamed back vs the same trial printing to /dev/null.

Both run the project's ``train`` task (``mlf.train_task('print_lines.py')``):
``--sink=stdout`` has every line read by the runner, sent in batches through
the broker and written to ``logs/<trial>.log`` by the driver (checked: every
line arrives); ``--sink=devnull`` writes the same lines, one write() each, to
/dev/null. A sweep of 4 such trials on 2 slots per run; the figure is
seconds per trial and the target the streamed / unstreamed ratio.

``output.embedded.extract`` / ``output.embedded.plain``: the cost of reading metrics
from the output, 2 trials of 200,000 metric lines read (``train``) or not
(``train_plain``); the two alternate run by run, and the first row's note gives
the run-by-run ratio's median and range.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.context import Context, measure
from bench.figures import Figure, Target

UNIT = "s/trial"
TRIALS = 4


def _all_lines_logged(lines: int):
    def check(directory: Path) -> None:
        for log in sorted((directory / "logs").glob("*.log")) or [None]:
            count = 0 if log is None else sum(1 for _ in open(log, encoding="utf-8"))
            if count != lines:
                raise RuntimeError(f"{log}: {count} lines logged, the trial printed {lines}")

    return check


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    lines = 1000 if ctx.options.quick else 10_000
    note = f"{TRIALS} trials of {lines:,} lines"
    figures: list[Figure] = []
    targets: list[Target] = []
    for mode, where in (("rabbitmq", "RabbitMQ"), ("embedded", "embedded")):
        for sink, label in (("stdout", "streamed"), ("devnull", "to /dev/null")):
            figure = Figure("output", f"{mode}.{sink}", f"ours, {where}, {label}", UNIT, note=note)
            if not ctx.wanted(figure.key):
                continue
            grid = {"lines": lines, "sink": sink, "trial": range(TRIALS)}
            check = _all_lines_logged(lines) if sink == "stdout" else None
            figures.append(
                measure(
                    figure,
                    ctx,
                    lambda mode=mode, grid=grid, check=check: ctx.sweep(mode, "train", grid, check=check) / TRIALS,
                )
            )
        targets.append(Target(f"output.{mode}.stdout", f"output.{mode}.devnull", "<=", 1.10, "< 1.10x unstreamed"))
    # The cost of reading metrics from the output: 2 trials of 200,000 lines, read for metrics or not; the two
    # alternate run by run, so that both see the same load on a shared machine.
    many = 20_000 if ctx.options.quick else 200_000
    pair = []
    for task, key, label in (("train", "extract", "metrics read from output"), ("train_plain", "plain", "not read")):
        figure = Figure(
            "output", f"embedded.{key}", f"ours, embedded, {label}", "s/trial", note=f"2 trials of {many:,} lines"
        )
        if ctx.wanted(figure.key):
            grid = {"lines": many, "sink": "stdout", "trial": range(2)}
            pair.append((figure, lambda task=task, grid=grid: ctx.sweep("embedded", task, grid) / 2))
    for run in range(1, ctx.runs + 1):
        for figure, one_run in pair:
            measure(figure, ctx, one_run, runs=run)
    figures.extend(figure for figure, _ in pair)
    if len(pair) == 2 and all(len(figure.values) == ctx.runs for figure, _ in pair):
        ratios = sorted(read / plain for read, plain in zip(pair[0][0].values, pair[1][0].values, strict=True))
        pair[0][0].note += (
            f"; run by run against not read: median {statistics.median(ratios):.2f}x, "
            f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x"
        )
    targets.append(Target("output.embedded.extract", "output.embedded.plain", "<=", 1.10, "<= 1.10x not read"))
    return figures, targets
