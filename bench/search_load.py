"""Does a search's result hinge on the machine's load? End-to-end sweeps on LCBench, quiet and with busy processes.

Run in the peers' venv (the grid's reference needs the surrogate), from the repository::

    bench/.venv-peers/bin/python bench/search_load.py --tasks 126026,167168,167200,168868,189865 --seeds 0,1,2 \\
        --search bohb --prune hyperband --workers 2 --trials 130 --busy 2 --scale 600 --out FILE

For each task and seed, the same ``mlframework sweep bench/projects/lcbench -p search.yml --search S --prune P
--trials N --seed SEED --local --workers W`` runs twice, back to back: once as the machine is (its load average is
recorded), once with ``--busy`` processes spinning on the CPU (``while True: pass``) for the whole sweep. An
asynchronous search decides from the results that have arrived when a worker asks, so load, which changes that
order, changes what it finds; this measures by how much. ``--scale``: simulated seconds a wall-clock second (600: a
whole trial of 52 epochs lasts 0.6-2 s, so a report's way to the driver, about 0.1 s, is short beside an epoch; at
3600 it is longer than most epochs and a pruned trial runs on for several of them before its stop arrives). Figures
per condition: median (min-max) regret at 1%, 2% and 5% of the grid's GPU hours (bench/search_figures.py
``summarize``, over real report times), pruning latency p99, trials pruned; and the ratio of the loaded median to
the quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench" / "peers"))
sys.path.extend(str(p) for p in (REPO / ".venv" / "lib").glob("python3*/site-packages"))

from bench.lcbench import SCALE_ENV  # noqa: E402
from bench.search_figures import FRACTIONS, percentile, summarize  # noqa: E402
from bench.search_sim import grid_reference  # noqa: E402

PROJECT = REPO / "bench" / "projects" / "lcbench"


def sweep(directory: Path, task: str, seed: int, search: str, prune: str, workers: int, trials: int) -> dict[str, Any]:
    """One ``mlframework sweep --local`` on ``task``: its start, driver CPU and trial records."""
    space = directory / f"search-{task}.yml"
    space.write_text((PROJECT / "search.yml").read_text().replace('"3945"', f'"{task}"'))
    results = directory / f"results-{task}-{seed}-{time.monotonic_ns()}"
    argv = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework", "sweep", str(PROJECT), "-p", str(space)]
    argv += ["--search", search, "--prune", prune, "--trials", str(trials), "--seed", str(seed)]
    argv += ["--metric", "val_accuracy", "--mode", "max", "--local", "--workers", str(workers)]
    argv += ["--results", str(results)]
    started = time.time()
    subprocess.run(argv, check=True, capture_output=True, cwd=directory, timeout=1800)
    [records] = list(results.glob("*/trials.jsonl"))
    trials_ = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    return {"task": task, "seed": seed, "started": started, "trials": trials_}


def spin(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that keep a CPU busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv: list[str] | None = None) -> None:
    """Runs every task x seed quiet, then loaded; prints one table, writes every run's figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="126026,167168,167200,168868,189865")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--search", default="bohb")
    parser.add_argument("--prune", default="hyperband")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=130)
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the loaded runs")
    parser.add_argument("--scale", type=float, default=600.0, help="simulated seconds per wall-clock second")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ[SCALE_ENV] = str(args.scale)
    conditions = {"no added load": 0, f"{args.busy} busy processes": args.busy}
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in conditions}
    with tempfile.TemporaryDirectory(prefix="bench-search-load-", ignore_cleanup_errors=True) as scratch:
        for task in args.tasks.split(","):
            best, hours = grid_reference(task)
            for seed in [int(s) for s in args.seeds.split(",")]:
                for name, busy in conditions.items():
                    load_before = os.getloadavg()[0]
                    spinners = spin(busy)
                    try:
                        run = sweep(Path(scratch), task, seed, args.search, args.prune, args.workers, args.trials)
                    finally:
                        for spinner in spinners:
                            spinner.kill()
                            spinner.wait()
                    summary = summarize(run, best, hours)
                    summary["task"], summary["seed"], summary["load_before"] = task, seed, load_before
                    figures[name].append(summary)
                    print(
                        f"{name}: task {task} seed {seed}: regret "
                        + " / ".join(f"{summary['regret'][f]:.3f}" for f in FRACTIONS)
                        + f" pp, {summary['pruned']} pruned, load before {load_before:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if args.out:
                        args.out.write_text(json.dumps(figures, default=str))
    print(
        f"| machine (`--search {args.search} --prune {args.prune}`, {args.workers} workers, {args.trials} trials) "
        "| regret at 1% | at 2% | at 5% | pruning p99 | runs |"
    )
    print("|:--|--:|--:|--:|--:|--:|")
    medians: dict[str, float] = {}
    for name, summaries in figures.items():
        cells = []
        for f in FRACTIONS:
            values = [s["regret"][f] for s in summaries]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        medians[name] = statistics.median(s["regret"][0.02] for s in summaries)
        latencies = [latency for s in summaries for latency in s["latencies"]]
        p99 = f"{percentile(latencies, 99):.2f} s" if latencies else "-"
        print(f"| {name} | " + " | ".join(cells) + f" | {p99} | {len(summaries)} |")
    quiet, loaded = medians.values()
    print(f"\nmedian regret at 2%, loaded / quiet: {loaded:.2f} / {quiet:.2f}")


if __name__ == "__main__":
    main()
