"""1. Trivial-trial throughput: trials that return at once, 2 slots, end to end.

Ours: ``run_sweep`` of the ``noop`` task (bench/projects/trivial), every trial
recorded in trials.jsonl and results.csv, on RabbitMQ (one LocalWorker with 2
pool processes) and in embedded mode (EmbeddedCluster, 2 workers). Peers:
plain Celery ``delay()``/``get()`` on the same RabbitMQ, Ray Tune, Optuna (in
process and 2 processes on a journal file), and ProcessPoolExecutor(2), the
floor. Figures are trials per second.
"""

from __future__ import annotations

import sys

from bench.context import SLOTS, Context, from_peer, measure
from bench.figures import Figure, Target

UNIT = "trials/s"


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    trials = 40 if ctx.options.quick else 2000
    ray_trials = 10 if ctx.options.quick else 200  # Ray Tune does about 10 trials/s: 2,000 would take minutes per run
    timeout = 120 if ctx.options.quick else 1800
    figures: list[Figure] = []

    def ours(system: str, label: str) -> None:
        figure = Figure("throughput", system, label, UNIT, note=f"{trials} trials")
        if ctx.wanted(figure.key):
            figures.append(measure(figure, ctx, lambda: trials / ctx.sweep(system, "noop", {"i": range(trials)})))

    def peer(system: str, label: str, n: int, call) -> None:
        figure = Figure("throughput", system, label, UNIT, note=f"{n} trials")
        if ctx.wanted(figure.key):
            figures.append(from_peer(figure, ctx, lambda: [n / wall for wall in call()["walls"]]))

    runs = str(ctx.runs)
    ours("rabbitmq", "ours, RabbitMQ, LocalWorker x2")
    ours("embedded", "ours, embedded (no server), 2 workers")
    peer(
        "celery",
        "plain Celery delay()/get(), rpc://, 2 prefork",
        trials,
        lambda: ctx.peer(
            sys.executable,
            "celery_plain.py",
            ["--broker", ctx.rabbitmq_url(), "--trials", str(trials), "--runs", runs],
            timeout,
        ),
    )
    peer(
        "ray",
        "Ray Tune Tuner grid, 2 concurrent, reuse_actors",
        ray_trials,
        lambda: ctx.peer(
            ctx.peers_python(),
            "ray_tune.py",
            ["--trials", str(ray_trials), "--runs", runs, "--slots", str(SLOTS)],
            timeout,
        ),
    )
    peer(
        "optuna",
        "Optuna enqueued, in-process, n_jobs=2",
        trials,
        lambda: ctx.peer(
            ctx.peers_python(), "optuna_peer.py", ["inprocess", "--trials", str(trials), "--runs", runs], timeout
        ),
    )
    peer(
        "optuna-journal",
        "Optuna enqueued, 2 processes, journal file",
        trials,
        lambda: ctx.peer(
            ctx.peers_python(), "optuna_peer.py", ["journal", "--trials", str(trials), "--runs", runs], timeout
        ),
    )
    peer(
        "pool",
        "ProcessPoolExecutor(2), chunksize 1 (floor)",
        trials,
        lambda: ctx.peer(sys.executable, "pool.py", ["trivial", "--trials", str(trials), "--runs", runs], timeout),
    )

    targets = [
        Target("throughput.rabbitmq", "throughput.celery", ">=", 4.0, ">= 4x plain Celery"),
        Target("throughput.rabbitmq", "throughput.pool", ">=", 0.4, ">= 0.4x pool"),
        Target("throughput.rabbitmq", "throughput.ray", ">=", 100.0, ">= 100x Ray Tune"),
        Target("throughput.embedded", "throughput.celery", ">=", 1.0, ">= 1x plain Celery"),
    ]
    return figures, targets
