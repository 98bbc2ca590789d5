"""7. Search on LCBench (issue 14, item 5): GPU hours and wall time to the grid's best, pruning, overhead.

Opt-in under ``--quick`` (``--only search``). Rows: the reference grid
evaluated directly (checks our surrogate reading against the data's README),
Optuna's ask/tell/should_prune micro-benchmark and ours (``ours-micro-*``:
our SearchSource in-process, bench/search_micro.py; needs no peer), Optuna
alone in-process and Ray Tune (OptunaSearch + ASHA), each on 2 and 4 workers
with the training loop's scaled sleeps, and ours (``mlframework sweep
--search``), with our wall time at equal quality against Ray Tune's. Sizes:
``$BENCH_SEARCH_TASKS`` (default 3945,34539,126025),
``$BENCH_SEARCH_SEEDS`` (default 5),
``$BENCH_SEARCH_TRIALS`` (130, about a twentieth of the grid unpruned),
``$BENCH_SEARCH_RAY_SEEDS`` (default: as many as the seeds; a run takes seconds on a quiet machine),
``$MLFRAMEWORK_LCBENCH_SCALE`` (3600 simulated s per wall s), ``$BENCH_SEARCH_MICRO_TRIALS``
(10,000: Optuna's own TPE + ASHA takes 40 min there, the longest row; ours' random and QMC rows about
15-25 s a run, TPE's ``$BENCH_SEARCH_TPE_MICRO_TRIALS``, 1,000, about 20 s).
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import time
from typing import Any

from bench.context import REPO, Context, Unavailable, measure
from bench.figures import Figure, Target, fmt
from bench.lcbench import SCALE_ENV, TASKS
from bench.search_figures import FRACTIONS, TOLERANCE, equal_quality_ratios, percentile, summarize

PROJECT = REPO / "bench" / "projects" / "lcbench"
README_REFERENCE = {"3945": (99.632, 225.0), "34539": (99.093, 181.1), "126025": (98.927, 168.0)}
OURS = {
    "random": ("random", "none"),
    "tpe": ("tpe", "none"),
    "tpe-hyperband": ("tpe", "hyperband"),
    "tpe-asha": ("tpe", "asha"),
    "bohb-asha": ("bohb", "asha"),
    "bohb-hyperband": ("bohb", "hyperband"),
}


OURS_MICRO = {
    "random-asha": ("random", "asha"),
    "random-hyperband": ("random", "hyperband"),
    "random-median": ("random", "median"),
    "qmc-asha": ("qmc", "asha"),
    "tpe-asha": ("tpe", "asha"),
    "bohb-asha": ("bohb", "asha"),
}


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _tasks() -> tuple[str, ...]:
    """The OpenML tasks to run: ``$BENCH_SEARCH_TASKS`` (comma-separated, a subset of the three), else all three."""
    wanted = [t.strip() for t in os.environ.get("BENCH_SEARCH_TASKS", "").split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TASKS]
    if unknown:
        raise ValueError(f"$BENCH_SEARCH_TASKS: {', '.join(unknown)} not among {', '.join(TASKS)}")
    return tuple(wanted) or TASKS


def has_search() -> bool:
    """Whether our CLI has ``sweep --search`` (issue 14's search); the ours rows wait for it."""
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework", "sweep", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return "--search" in done.stdout


def _peer_json(ctx: Context, script: str, args: list[str], timeout: float) -> dict[str, Any]:
    out = ctx.workdir / f"{script}-{len(list(ctx.workdir.glob('*.json')))}.json"
    ctx.peer(ctx.peers_python(), script, [*args, "--out", str(out)], timeout)
    return json.loads(out.read_text())


def _search_figures(prefix: str, label: str, runs: list[dict[str, Any]], reference: dict[str, Any]) -> list[Figure]:
    stats = [summarize(r, reference[r["task"]]["best_val_accuracy"], reference[r["task"]]["total_hours"]) for r in runs]
    latencies = [x for s in stats for x in s["latencies"]]
    matched = sum(s["matched"] for s in stats)
    note = f"{len(runs)} runs (tasks x seeds), {matched} matched the grid's best within {TOLERANCE} pp"
    rows = [
        ("hours", "GPU hours to grid's best / grid total", "fraction", [s["fraction"] for s in stats]),
        ("wall", "wall time to grid's best", "s", [s["wall_to_match"] for s in stats]),
        ("pruned", "trials pruned until then", "trials", [float(s["pruned"]) for s in stats]),
        ("cpu", "driver CPU per trial", "ms", [s["cpu_per_trial_ms"] for s in stats]),
        *(
            (
                f"regret-{round(100 * f)}",
                f"regret at {100 * f:g}% of the grid's GPU hours",
                "pp",
                [s["regret"][f] for s in stats],
            )
            for f in FRACTIONS
        ),
    ]
    figures = [
        Figure("search", f"{prefix}.{key}", f"{label}: {text}", unit, values, note) for key, text, unit, values in rows
    ]
    by_task: dict[str, list[float]] = {}
    for run, stat in zip(runs, stats):
        by_task.setdefault(run["task"], []).append(stat["fraction"])
    figures[0].note += "; median over seeds by task: " + ", ".join(
        f"{task} {fmt(statistics.median(fractions))} ({sum(map(math.isfinite, fractions))}/{len(fractions)} matched)"
        for task, fractions in by_task.items()
    )
    if latencies:
        for q in (50, 99):
            figures.append(
                Figure(
                    "search",
                    f"{prefix}.prune-p{q}",
                    f"{label}: pruning latency p{q}",
                    "s",
                    [percentile(latencies, q)],
                    f"{len(latencies)} pruned trials",
                )
            )
    return figures


def _ours_runs(
    ctx: Context, search: str, prune: str, task: str, workers: int, seeds: list[int], trials: int
) -> list[dict[str, Any]]:
    """``mlframework sweep bench/projects/lcbench -p SPACE --search ... --local --workers W`` per seed."""
    space = ctx.workdir / f"search-{task}.yml"
    text = (PROJECT / "search.yml").read_text().replace('OpenML_task_id: "3945"', f'OpenML_task_id: "{task}"')
    space.write_text(text)
    runs = []
    for seed in seeds:
        results = ctx.workdir / f"ours-{search}-{prune}-{task}-{workers}-{seed}"
        argv = [
            str(REPO / ".venv" / "bin" / "python"),
            "-m",
            "mlframework",
            "sweep",
            str(PROJECT),
            "-p",
            str(space),
            "--search",
            search,
            "--trials",
            str(trials),
            "--seed",
            str(seed),
            "--metric",
            "val_accuracy",
            "--mode",
            "max",
            "--prune",
            prune,
            "--local",
            "--workers",
            str(workers),
            "--results",
            str(results),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        subprocess.run(argv, check=True, capture_output=True, cwd=ctx.workdir, timeout=1800)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Driver CPU is the sweep command's own (its workers are its children's children; an upper bound).
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        [jsonl] = list(results.glob("*/trials.jsonl"))
        trials_ = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        runs.append(
            {"seed": seed, "task": task, "workers": workers, "started": started, "driver_cpu_s": cpu, "trials": trials_}
        )
    return runs


def _ours_micro(ctx: Context, quick: bool) -> tuple[list[Figure], list[Target]]:
    """Our SearchSource's ask + reports + tell per trial, in-process (bench/search_micro.py), per sampler and pruner."""
    figures: list[Figure] = []
    targets: list[Target] = []
    n = 200 if quick else _int("BENCH_SEARCH_MICRO_TRIALS", 10000)
    for name, (sampler, prune) in OURS_MICRO.items():
        key = f"ours-micro-{name}"
        if not ctx.wanted(f"search.{key}"):
            continue
        # TPE's ask is O(finished trials) (README): 10,000 of them would take hours, so it runs fewer.
        trials = min(n, _int("BENCH_SEARCH_TPE_MICRO_TRIALS", 1000)) if sampler == "tpe" else n
        figure = Figure(
            "search", key, f"ours, SearchSource {sampler} + {prune}, ask/52 reports/tell in-process", "ms/trial"
        )
        figure.note = f"{trials} trials"

        def one_run(sampler: str = sampler, prune: str = prune, trials: int = trials, figure: Figure = figure) -> float:
            done = subprocess.run(
                [
                    str(REPO / ".venv" / "bin" / "python"),
                    "-m",
                    "bench.search_micro",
                    "--sampler",
                    sampler,
                    "--prune",
                    prune,
                    "--trials",
                    str(trials),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
                timeout=7200,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            figure.note = (
                f"{trials} trials, {result['pruned']} pruned; last 1,000: {result['last_1000_mean_ms']:.2f} ms mean,"
                f" p99 {result['last_1000_p99_ms']:.2f} ms"
            )
            return float(result["mean_ms"])

        ctx.quiet_machine()
        figures.append(measure(figure, ctx, one_run))
        if sampler != "tpe":
            targets.append(Target(f"search.{key}", None, "<=", 5.0, f"< 5 ms/trial at {trials:,} trials"))
    return figures, targets


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    if ctx.options.only and not any(item.split(".")[0] == "search" for item in ctx.options.only):
        return [], []
    if ctx.options.quick and not any(item.split(".")[0] == "search" for item in ctx.options.only):
        return [], []  # opt-in under --quick: CI's smoke test stays as fast as it was
    quick = ctx.options.quick
    seeds = list(range(1 if quick else _int("BENCH_SEARCH_SEEDS", 5)))
    tasks = TASKS[:1] if quick else _tasks()
    workers_set = (2,) if quick else (2, 4)
    trials = 10 if quick else _int("BENCH_SEARCH_TRIALS", 130)
    scale = os.environ.get(SCALE_ENV, "3600")
    figures, targets = _ours_micro(ctx, quick)  # needs no peer
    lcbench = [i for i in ctx.options.only if i.split(".")[0] == "search" and not i.startswith("search.ours-micro")]
    if ctx.options.only and not lcbench:
        return figures, targets  # only our overhead was asked for: no surrogate needed
    try:
        reference = _peer_json(ctx, "lcbench_optuna.py", ["reference"], 300)["tasks"]
    except (Unavailable, RuntimeError) as exc:
        why = str(exc).splitlines()[0]
        return [*figures, Figure("search", "reference", "LCBench reference grid", "pp", unavailable=why)], targets
    diff = max(abs(reference[t]["best_val_accuracy"] - README_REFERENCE[t][0]) for t in TASKS)
    hours = max(abs(reference[t]["total_hours"] - README_REFERENCE[t][1]) for t in TASKS)
    figures.append(
        Figure(
            "search",
            "reference",
            "grid of 2,592 points at epoch 52, largest best-value gap to the data README over 3 tasks",
            "pp",
            [diff],
            f"largest total-hours gap {hours:.2f} h; "
            + ", ".join(
                f"{t}: {reference[t]['best_val_accuracy']:.3f} / {reference[t]['total_hours']:.1f} h" for t in TASKS
            ),
        )
    )
    targets.append(Target("search.reference", None, "<=", 0.001, "README's table to 3 decimals"))
    if ctx.wanted("search.micro"):
        n = 200 if quick else _int("BENCH_SEARCH_MICRO_TRIALS", 10000)
        figure = Figure(
            "search", "micro", f"Optuna TPE + ASHA ask/tell/should_prune, in-process ({n} trials)", "ms/trial"
        )
        try:
            micro = _peer_json(ctx, "lcbench_optuna.py", ["micro", "--trials", str(n), "--pruner", "asha"], 7200)
            figure.values = [micro["mean_ms"]]
            figure.note = (
                f"last 1000 trials {micro['last_1000_mean_ms']:.1f} ms mean, p99 {micro['last_1000_p99_ms']:.1f} ms"
            )
        except (Unavailable, RuntimeError) as exc:
            figure.unavailable = str(exc).splitlines()[0]
        figures.append(figure)
        targets.append(Target("search.micro", None, "<=", 5.0, "< 5 ms/trial"))
    ray_runs: dict[int, list[dict[str, Any]]] = {}
    for workers in workers_set:
        for pruner in ("hyperband", "asha"):
            key = f"optuna-{pruner}-w{workers}"
            if not ctx.wanted(f"search.{key}"):
                continue
            runs: list[dict[str, Any]] = []
            try:
                for task in tasks:
                    runs += _peer_json(
                        ctx,
                        "lcbench_optuna.py",
                        [
                            "study",
                            "--task",
                            task,
                            "--seeds",
                            ",".join(map(str, seeds)),
                            "--workers",
                            str(workers),
                            "--trials",
                            str(trials),
                            "--pruner",
                            pruner,
                            "--scale",
                            scale,
                        ],
                        3600,
                    )["runs"]
                figures += _search_figures(key, f"Optuna alone, TPE + {pruner}, n_jobs={workers}", runs, reference)
            except (Unavailable, RuntimeError) as exc:
                figures.append(
                    Figure("search", key, f"Optuna alone, TPE + {pruner}", "-", unavailable=str(exc).splitlines()[0])
                )
        key = f"ray-w{workers}"
        if ctx.wanted(f"search.{key}"):
            runs = []
            ray_seeds = seeds[: 1 if quick else _int("BENCH_SEARCH_RAY_SEEDS", len(seeds))]
            try:
                for task in tasks:
                    target = reference[task]["best_val_accuracy"] - TOLERANCE
                    runs += _peer_json(
                        ctx,
                        "lcbench_ray.py",
                        [
                            "--task",
                            task,
                            "--seeds",
                            ",".join(map(str, ray_seeds)),
                            "--workers",
                            str(workers),
                            "--trials",
                            str(trials),
                            "--scale",
                            scale,
                            "--target",
                            str(target),
                        ],
                        3600,
                    )["runs"]
                figures += _search_figures(key, f"Ray Tune, OptunaSearch + ASHA, {workers} concurrent", runs, reference)
                ray_runs[workers] = runs
                inits = [r["ray_init_s"] for r in runs if "ray_init_s" in r]
                if inits:  # outside each run's clock (ours counts its start-up: CLI, imports, workers)
                    figures.append(
                        Figure(
                            "search",
                            f"{key}.init",
                            f"Ray Tune, {workers} concurrent: ray.init, not in its wall times above",
                            "s",
                            inits,
                            "once per task (all seeds share it)",
                        )
                    )
            except (Unavailable, RuntimeError) as exc:
                figures.append(
                    Figure("search", key, "Ray Tune, OptunaSearch + ASHA", "-", unavailable=str(exc).splitlines()[0])
                )
        search_ok = has_search()
        for name, (search, prune) in OURS.items():
            key = f"ours-{name}-w{workers}"
            if not ctx.wanted(f"search.{key}"):
                continue
            label = f"ours, --search {search} --prune {prune}, --local --workers {workers}"
            if not search_ok:
                figures.append(
                    Figure(
                        "search",
                        key,
                        label,
                        "-",
                        unavailable="pending --search (mlframework sweep --help has no --search yet)",
                    )
                )
                continue
            ctx.quiet_machine()
            runs = []
            try:
                for task in tasks:
                    runs += _ours_runs(ctx, search, prune, task, workers, seeds, trials)
                figures += _search_figures(key, label, runs, reference)
                if name == "tpe-asha" and ray_runs.get(workers):
                    ratios = equal_quality_ratios(runs, ray_runs[workers])
                    figures.append(
                        Figure(
                            "search",
                            f"{key}.equal-wall",
                            f"{label}: wall time to the best value both reached / Ray Tune's, same task and seed",
                            "x Ray",
                            ratios,
                            f"{len(ratios)} (task, seed) pairs; median, min and max over them",
                        )
                    )
            except (subprocess.SubprocessError, ValueError, OSError) as exc:
                figures.append(Figure("search", key, label, "-", unavailable=f"failed: {str(exc).splitlines()[0]}"))
            targets.append(Target(f"search.{key}.hours", None, "<=", 0.05, "<= 1/20 of the grid's GPU hours"))
            if name == "tpe-asha":
                targets.append(
                    Target(f"search.{key}.wall", f"search.ray-w{workers}.wall", "<=", 0.5, "<= 0.5x Ray Tune's wall")
                )
                targets.append(
                    Target(f"search.{key}.equal-wall", None, "<=", 0.5, "<= 0.5x Ray Tune's wall, at equal quality")
                )
                targets.append(Target(f"search.{key}.prune-p99", None, "<=", 1.0, "< 1 s"))
    return figures, targets
