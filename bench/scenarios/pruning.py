"""8. Pruning on a cluster worker (issue 14, item 3): a pruned trial's last report to its process's end, p50 and p99.

Two test hosts (testbed/testhosts.py; root), ``infrainit.sh -m 1 -w 1,2
--cpu-slots 1``: the broker on host 1, one worker container with one slot on
each host, the driver here. The project is the sample ``sklearn_digits`` with a
probe script added: it reports ``score = x * (step + 1)`` every 0.1 s for 20
steps. ``mlframework sweep --search random --prune asha`` runs 60 trials;
ASHA stops most of them at its first rungs. A pruned trial's latency is its
record's ``finished_at`` (written by the worker in the container once the
trial's process has exited) minus the time of its last report (stamped by
``metrics.log`` in the trial's process): the report's way from the container
to the driver, the decision, the stop broadcast back, SIGTERM and the exit.
Both stamps come from the same host's clock. The figure of a run is the p50 or
p99 over its pruned trials; the row's median is over the runs.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from bench.context import REPO, Context, measure
from bench.figures import Figure, Target
from bench.scenarios.bringup import Hosts, cannot_run
from bench.search_figures import percentile
from mlframework.statuses import PRUNED

TRIALS = 60
PROBE = """\
import argparse, time
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--pause", type=float, default=0.1)
args, _ = parser.parse_known_args()
for step in range(args.steps):
    time.sleep(args.pause)
    metrics.log(step=step, score=args.x * (step + 1))
"""
SPACE = "x: !uniform [0.0, 1.0]\n"


def _pruned_latencies(hosts: Hosts, attempt: int) -> list[float]:
    """One search on the cluster; the pruning latency of each of its pruned trials."""
    results = f"searches-{attempt}"
    hosts.run(
        str(REPO / ".venv" / "bin" / "python"),
        "-m",
        "mlframework",
        "sweep",
        "projects/sklearn_digits",
        "--task",
        "probe",
        "-p",
        "search.yml",
        "--search",
        "random",
        "--trials",
        str(TRIALS),
        "--seed",
        str(attempt),
        "--metric",
        "score",
        "--prune",
        "asha",
        "--results",
        results,
        timeout=600,
    )
    [jsonl] = list((hosts.repo / results).glob("*/trials.jsonl"))
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    if len(records) != TRIALS:
        raise RuntimeError(f"{len(records)} records for {TRIALS} trials in {jsonl}")
    return [r["finished_at"] - r["history"][-1]["time"] for r in records if r["status"] == PRUNED and r["history"]]


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    figures = [
        Figure("pruning", f"cluster-p{q}", f"ours: pruning latency p{q} on a cluster worker (2 test hosts)", "s")
        for q in (50, 99)
    ]
    figures = [figure for figure in figures if ctx.wanted(figure.key)]
    targets = [Target("pruning.cluster-p99", None, "<=", 1.0, "< 1 s")]
    if not figures or cannot_run(figures):
        return figures, targets
    ctx.stop_workers()  # nothing of ours competes for the two cores meanwhile
    hosts: Any = None
    try:
        hosts = Hosts(count=2)
        project = hosts.repo / "projects" / "sklearn_digits"
        (project / "prune_probe.py").write_text(PROBE)
        tasks = project / "tasks.py"
        tasks.write_text(tasks.read_text() + 'probe = mlf.train_task("prune_probe.py", name="probe")\n')
        (hosts.repo / "search.yml").write_text(SPACE)
        hosts.infrainit(2)
        runs: list[list[float]] = []
        attempts = itertools.count()  # a redone run gets a results directory of its own

        def one_run() -> float:
            latencies = _pruned_latencies(hosts, next(attempts))
            runs.append(latencies)
            return percentile(latencies, 50)

        started = time.monotonic()
        p50 = next((f for f in figures if f.key == "pruning.cluster-p50"), Figure("pruning", "p50", "", "s"))
        measure(p50, ctx, one_run)
        for figure in figures:
            if figure.key == "pruning.cluster-p99":
                figure.values = [percentile(latencies, 99) for latencies in runs]
            figure.note = (
                f"{TRIALS} trials a run, {sum(map(len, runs))} pruned in {len(runs)} run(s), "
                f"worst {max((max(r) for r in runs if r), default=float('nan')):.3f} s; "
                f"{time.monotonic() - started:.0f} s in all"
            )
        hosts.clean()
    except Exception as exc:  # no test hosts here, or the sweep failed: the rows say why
        for figure in figures:
            if not figure.values:
                figure.unavailable = f"not run: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        if hosts is not None:
            hosts.close()
    return figures, targets
