"""10. Metrics a script prints, against metrics.log: pruning latency, embedded, and the reading's cost.

``printed.prune-log-p99`` / ``printed.prune-print-p99``: a random + ASHA search of 40 trials
on 2 embedded workers (``mlframework sweep --local``) of a probe that reports
``score = x * (step + 1)`` every 0.1 s for 20 steps, once with ``metrics.log`` and once by
printing ``step N: score X`` (no import of ours). A pruned trial's latency is its record's
``finished_at`` (the worker, once the process exited) minus the time the probe reported
its last value (stamped by the probe itself, the same clock). The row is the p99 over the
pruned trials of a run; the median is over runs. Target: printed within 10% of metrics.log.

The cost of reading metrics from output is ``output.embedded.extract`` against
``output.embedded.plain`` (scenario 6).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.context import Context, measure
from bench.figures import Figure, Target
from bench.search_figures import percentile
from mlframework.statuses import PRUNED

TRIALS = 40
PROBE = """\
import argparse, os, sys, time
from pathlib import Path
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--how", choices=["log", "print"], required=True)
args = parser.parse_args()
stamps = Path(__file__).parent / "stamps"
stamps.mkdir(exist_ok=True)
stamp = stamps / os.environ["MLFRAMEWORK_TRIAL_ID"]
for step in range(20):
    time.sleep(0.1)
    score = args.x * (step + 1)
    if args.how == "log":
        metrics.log(step=step, score=score)
    else:
        print(f"step {step}: score {score:.6f}", flush=True)
    stamp.write_text(repr(time.time()))
"""


def _latencies(workdir: Path, how: str, attempt: int) -> list[float]:
    """One search; the pruning latency of each of its pruned trials."""
    project = workdir / f"probe-{how}-{attempt}"
    project.mkdir(parents=True)
    (project / "train.py").write_text(PROBE)
    (project / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('train.py')\n")
    (project / "search.yml").write_text(f"x: !uniform [0.0, 1.0]\nhow: {how}\n")
    command = [sys.executable, "-m", "mlframework", "sweep", str(project), "-p", str(project / "search.yml")]
    command += ["--local", "--workers", "2", "--search", "random", "--trials", str(TRIALS), "--seed", str(attempt)]
    command += ["--metric", "score", "--prune", "asha", "--results", str(project / "results"), "-q"]
    subprocess.run(command, check=True, capture_output=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    [jsonl] = list((project / "results").glob("*/trials.jsonl"))
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    if len(records) != TRIALS:
        raise RuntimeError(f"{len(records)} records for {TRIALS} trials in {jsonl}")
    return [
        r["finished_at"] - float((project / "stamps" / r["trial"]).read_text())
        for r in records
        if r["status"] == PRUNED and (project / "stamps" / r["trial"]).exists()
    ]


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    figures: list[Figure] = []
    attempts = itertools.count()
    for how, label in (("log", "metrics.log"), ("print", "printed")):
        figure = Figure("printed", f"prune-{how}-p99", f"ours: pruning latency p99, {label}, embedded", "s")
        if not ctx.wanted(figure.key):
            continue
        ctx.stop_workers()  # the search starts its own embedded workers
        pruned: list[int] = []
        started = time.monotonic()

        def one_run(how: str = how, pruned: list[int] = pruned) -> float:
            latencies = _latencies(ctx.workdir, how, next(attempts))
            pruned.append(len(latencies))
            return percentile(latencies, 99)

        measure(figure, ctx, one_run)
        figure.note = f"{TRIALS} trials a run, {sum(pruned)} pruned in all; {time.monotonic() - started:.0f} s"
        figures.append(figure)
    targets = [Target("printed.prune-print-p99", "printed.prune-log-p99", "<=", 1.10, "within 10% of metrics.log's")]
    return figures, targets
