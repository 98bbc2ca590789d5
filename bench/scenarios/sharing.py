"""Sharing a cluster: a second sweep's wait for its first trial, and the shares two sweeps hold.

One worker of 4 slots on RabbitMQ (the ``sleep`` task of bench/projects/trivial: the trials sleep, so 4 slots
fit on 2 cores). Sweep A (40 trials of 2 s) fills every slot; 3 s later sweep B (16 trials of 2 s) starts, each
driver a ``mlframework sweep`` process of its own. Figures from the records' start and end times:

* ``sharing.first-trial``: seconds from B's driver start (its sweep directory appearing) to its first trial's start;
* ``sharing.fairness``: over the overlap (B's first start to the last start of either sweep), the larger of the
  two sweeps' deviations from their fair share of the slots (2 of 4 each), as a fraction of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.context import PROJECT, Context, measure
from bench.figures import Figure, Target
from mlframework import envvars

SLOTS = 4
TRIAL_SECONDS = 2.0


def _records(results: Path) -> list[dict]:
    (trials,) = results.glob("*/trials.jsonl")
    return [json.loads(line) for line in trials.read_text().splitlines()]


def _held(records: list[dict], t0: float, t1: float) -> float:
    return sum(max(0.0, min(r["finished_at"], t1) - max(r["started_at"], t0)) for r in records) / (t1 - t0)


def _overlap(ctx: Context, url: str, a_trials: int, b_trials: int) -> tuple[float, float]:
    """One run: (B's wait for its first trial in s, the larger deviation from a fair share)."""
    work = Path(tempfile.mkdtemp(prefix="sharing-", dir=ctx.workdir))
    for name, count, first in (("a", a_trials, 0), ("b", b_trials, 1000)):
        (work / f"{name}.yml").write_text(f"i: !!python/tuple [{first}, {first + count}]\nseconds: [{TRIAL_SECONDS}]\n")
    env = {**os.environ, envvars.BROKER_URL: url}

    def start(name: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "mlframework", "sweep", str(PROJECT), "-p", str(work / f"{name}.yml")]
        command += ["--task", "sleep", "--results", str(work / name), "-q"]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    a = start("a")
    time.sleep(TRIAL_SECONDS * 1.5)
    b = start("b")
    b_start = None
    while b_start is None and b.poll() is None:
        if list((work / "b").glob("*/sweep.json")):
            b_start = time.time()
        time.sleep(0.01)
    if a.wait(timeout=300) or b.wait(timeout=300) or b_start is None:
        raise RuntimeError("a sweep failed")
    a_records, b_records = _records(work / "a"), _records(work / "b")
    first_b = min(r["started_at"] for r in b_records)
    t1 = min(max(r["started_at"] for r in a_records), max(r["started_at"] for r in b_records))
    fair = SLOTS / 2
    deviation = max(abs(_held(records, first_b, t1) - fair) / fair for records in (a_records, b_records))
    return first_b - b_start, deviation


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    from mlframework.cluster.embedded.workers import LocalWorker
    from mlframework.sweep.wire.app import BrokerSettings

    a_trials, b_trials = (12, 4) if ctx.options.quick else (40, 16)
    note = (
        f"4 slots, A: {a_trials} trials of {TRIAL_SECONDS:g} s, B: {b_trials} started {TRIAL_SECONDS * 1.5:g} s later"
    )
    wait = Figure("sharing", "first-trial", "ours, RabbitMQ: B's start to its first trial", "s", note=note)
    fairness = Figure("sharing", "fairness", "ours, RabbitMQ: largest deviation from a fair share", "x fair", note=note)
    wanted = [figure for figure in (wait, fairness) if ctx.wanted(figure.key)]
    if not wanted:
        return [], []
    ctx.stop_workers()
    try:
        url = ctx.rabbitmq_url()
    except Exception as exc:  # a bench row that says why, not a lost bench
        for figure in wanted:
            figure.unavailable = f"not available: {exc}"
        return wanted, []
    runs: list[tuple[float, float]] = []
    with LocalWorker(BrokerSettings(url), PROJECT, SLOTS, ctx.workdir / "sharing-worker.log", node_name="share@%h"):

        def one_run() -> float:
            runs.append(_overlap(ctx, url, a_trials, b_trials))
            return runs[-1][0]

        measure(wait, ctx, one_run)
        fairness.values = [deviation for _, deviation in runs]
    targets = [
        Target("sharing.first-trial", None, "<=", TRIAL_SECONDS + 1, f"<= one trial ({TRIAL_SECONDS:g} s) + 1 s"),
        Target("sharing.fairness", None, "<=", 0.10, "within 10% of fair"),
    ]
    return [figure for figure in (wait, fairness) if figure in wanted], targets
