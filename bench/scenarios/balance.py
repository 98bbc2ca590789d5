"""3. Scheduling balance: 40 trials of seeded durations in [0.1, 1.5] s on 2 slots.

The figure is makespan / max(sum / 2, longest), the lower bound no scheduler
can beat; 1.0 is perfect. Ours: the ``sleep`` task on RabbitMQ and embedded,
the makespan being run_sweep's wall time; the floor: ProcessPoolExecutor(2).
Trials are sent in grid order (the durations are not known in advance).
"""

from __future__ import annotations

import random
import sys

from bench.context import SLOTS, Context, from_peer, measure
from bench.figures import Figure, Target

UNIT = "x bound"
SEED = 6


def durations(quick: bool) -> list[float]:
    rng = random.Random(SEED)
    if quick:
        return [round(rng.uniform(0.05, 0.3), 3) for _ in range(6)]
    return [round(rng.uniform(0.1, 1.5), 3) for _ in range(40)]


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    seconds = durations(ctx.options.quick)
    bound = max(sum(seconds) / SLOTS, max(seconds))
    note = f"{len(seconds)} trials, sum {sum(seconds):.1f} s, bound {bound:.2f} s, seed {SEED}"
    figures: list[Figure] = []
    for system, label in (("rabbitmq", "ours, RabbitMQ, sleep task"), ("embedded", "ours, embedded, sleep task")):
        figure = Figure("balance", system, label, UNIT, note=note)
        if ctx.wanted(figure.key):
            figures.append(
                measure(figure, ctx, lambda system=system: ctx.sweep(system, "sleep", {"seconds": seconds}) / bound)
            )
    figure = Figure("balance", "pool", "ProcessPoolExecutor(2), chunksize 1 (floor)", UNIT, note=note)
    if ctx.wanted(figure.key):
        figures.append(
            from_peer(
                figure,
                ctx,
                lambda: [
                    wall / bound
                    for wall in ctx.peer(
                        sys.executable,
                        "pool.py",
                        ["sleep", "--durations", ",".join(map(str, seconds)), "--runs", str(ctx.runs)],
                        600,
                    )["walls"]
                ],
            )
        )
    targets = [
        Target("balance.rabbitmq", None, "<=", 1.05, "<= 1.05"),
        Target("balance.embedded", None, "<=", 1.05, "<= 1.05"),
    ]
    return figures, targets
