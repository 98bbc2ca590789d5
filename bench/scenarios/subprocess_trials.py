"""2. Subprocess trials: each trial runs ``python -c 'print(1)'`` as a training script is launched.

Ours: the ``spawn`` task (``trial.run([python, "-c", "print(1)"])``: a pipe
per stream, output streamed, metrics file read) on RabbitMQ and embedded;
the floor: ProcessPoolExecutor(2) running ``subprocess.run`` with the output
captured. The figure is the issue's: wall / (trials x one spawn / 2 slots),
where one spawn is the median of 20 sequential spawns timed here first.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench.context import SLOTS, Context, from_peer, measure
from bench.figures import Figure, Target

UNIT = "x ideal"


def one_spawn() -> float:
    """Median seconds of ``python -c 'print(1)'`` with its output captured, one at a time."""
    walls = []
    for _ in range(20):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    trials = 10 if ctx.options.quick else 200
    keys = [f"subprocess.{system}" for system in ("rabbitmq", "embedded", "pool")]
    if not any(ctx.wanted(key) for key in keys):
        return [], []
    ctx.quiet_machine()  # nothing else running while the spawn is timed
    spawn = one_spawn()
    ideal = trials * spawn / SLOTS
    note = f"{trials} trials; one spawn {spawn * 1000:.0f} ms, ideal {ideal:.2f} s"
    figures: list[Figure] = []
    for system, label in (("rabbitmq", "ours, RabbitMQ, spawn task"), ("embedded", "ours, embedded, spawn task")):
        figure = Figure("subprocess", system, label, UNIT, note=note)
        if ctx.wanted(figure.key):
            figures.append(
                measure(figure, ctx, lambda system=system: ctx.sweep(system, "spawn", {"i": range(trials)}) / ideal)
            )
    figure = Figure("subprocess", "pool", "ProcessPoolExecutor(2) + subprocess.run (floor)", UNIT, note=note)
    if ctx.wanted(figure.key):
        figures.append(
            from_peer(
                figure,
                ctx,
                lambda: [
                    wall / ideal
                    for wall in ctx.peer(
                        sys.executable, "pool.py", ["spawn", "--trials", str(trials), "--runs", str(ctx.runs)], 600
                    )["walls"]
                ],
            )
        )
    targets = [
        Target("subprocess.rabbitmq", "subprocess.pool", "<=", 1.15, "<= 1.15x pool wall"),
        Target("subprocess.embedded", "subprocess.pool", "<=", 1.15, "<= 1.15x pool wall"),
    ]
    return figures, targets
