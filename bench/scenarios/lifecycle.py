"""7. A sweep's end and its live output, as the command line lives them (embedded mode, issue 12).

* ``lifecycle.exit``: seconds from the summary line of ``mlframework sweep
  --local`` to the command's exit (the workers stopped, everything of the
  sweep gone); 3 trivial trials on 2 workers. Target < 1 s.
* ``lifecycle.show_output`` / ``lifecycle.quiet``: wall time of the whole
  command for 2 trials of 200,000 lines each, with ``--show-output`` (stdout
  to a pipe that is read, as a terminal would be) and without it. Target
  <= 1.10x without.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.context import PROJECT, Context, measure
from bench.figures import Figure, Target


def _command(ctx: Context, grid: str, *extra: str) -> list[str]:
    parameters = ctx.workdir / "lifecycle.yml"
    parameters.write_text(grid)
    results = ctx.workdir / "lifecycle-results"
    return [
        sys.executable,
        "-m",
        "mlframework",
        "sweep",
        str(PROJECT),
        "-p",
        str(parameters),
        "--local",
        "--workers",
        "2",
        "--results",
        str(results),
        *extra,
    ]


def _run(argv: list[str], cwd: Path) -> tuple[float, float | None]:
    """Wall time of the command, and seconds from its summary line to its exit."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    summary_at = None
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail, line][-20:]
        if " finished in " in line:
            summary_at = time.perf_counter()
    process.wait()
    ended = time.perf_counter()
    if process.returncode != 0:
        raise RuntimeError(f"sweep exited with {process.returncode}: {''.join(tail)}")
    return ended - started, (ended - summary_at) if summary_at is not None else None


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    ctx.quiet_machine()
    figures: list[Figure] = []
    targets: list[Target] = []
    exit_figure = Figure("lifecycle", "exit", "sweep end to command exit, embedded", "s", note="3 trials, 2 workers")
    if ctx.wanted(exit_figure.key):

        def to_exit() -> float:
            _, after = _run(_command(ctx, "seconds: [0.1, 0.2, 0.3]\n", "--task", "sleep"), ctx.workdir)
            if after is None:
                raise RuntimeError("no summary line")
            return after

        figures.append(measure(exit_figure, ctx, to_exit))
        targets.append(Target("lifecycle.exit", None, "<=", 1.0, "< 1 s"))
    lines = 20_000 if ctx.options.quick else 200_000
    grid = f"lines: [{lines}]\nsink: [stdout]\ntrial: [0, 1]\n"
    note = f"2 trials of {lines:,} lines"
    for system, label, extra in (
        ("show_output", "--show-output on 200,000 lines", ("--show-output",)),
        ("quiet", "the same without --show-output", ()),
    ):
        figure = Figure("lifecycle", system, label, "s", note=note)
        if ctx.wanted(figure.key):
            argv = _command(ctx, grid, *extra)
            figures.append(measure(figure, ctx, lambda argv=argv: _run(argv, ctx.workdir)[0]))
    targets.append(Target("lifecycle.show_output", "lifecycle.quiet", "<=", 1.10, "<= 1.10x without"))
    return figures, targets
