"""Optuna on LCBench: the reference grid, the ask/tell/prune micro-benchmark, Optuna alone with scaled sleeps.

    lcbench_optuna.py reference --out FILE          # the README's grid, evaluated directly at epoch 52
    lcbench_optuna.py micro --trials 10000 --pruner hyperband --out FILE
    lcbench_optuna.py study --task 3945 --seeds 0,1 --workers 2 --trials 130 --pruner asha --scale 3600 --out FILE

``study`` is Optuna alone, in-process: ``study.optimize(n_jobs=WORKERS)`` with
TPE (``constant_liar`` when WORKERS > 1) or random, the pruner, the space of
config_space.json, each trial 52 epochs of the surrogate with scaled sleeps
(bench/peers/lcbench_common.py). Every mode writes its results as JSON to
FILE and prints ``{"out": FILE}`` last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import threading
import time
from typing import Any

import optuna
from lcbench_common import EPOCHS, run_trial, space, surrogate

from bench.lcbench import GRID, TASKS
from mlframework.statuses import PRUNED


def sampler(name: str, seed: int, workers: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=workers > 1)


def pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruners as the bench configures them for every system (resource = epochs 1-52, reduction factor 3)."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial) -> dict[str, float]:
    config: dict[str, float] = {}
    for name, dist in space().items():
        if dist["type"] == "int":
            config[name] = trial.suggest_int(name, dist["low"], dist["high"], log=dist["log"])
        else:
            config[name] = trial.suggest_float(name, dist["low"], dist["high"], log=dist["log"])
    return config


def reference() -> dict[str, Any]:
    keys = list(GRID)
    points = [dict(zip(keys, values)) for values in itertools.product(*(GRID[k] for k in keys))]
    out: dict[str, Any] = {"points": len(points), "tasks": {}}
    for task in TASKS:
        started = time.perf_counter()
        results = [row[0] for row in surrogate().query_many(task, points, [EPOCHS])]
        seconds = time.perf_counter() - started
        best = max(range(len(points)), key=lambda i: results[i]["val_accuracy"])
        out["tasks"][task] = {
            "best_val_accuracy": results[best]["val_accuracy"],
            "best_params": points[best],
            "total_hours": sum(r["time"] for r in results) / 3600,
            "eval_seconds": seconds,
        }
    return out


def micro(trials: int, sampler_name: str, pruner_name: str, task: str) -> dict[str, Any]:
    """Ask + 52 x (report + should_prune) + tell per trial, the surrogate's own time left out of the clock."""
    study = optuna.create_study(direction="maximize", sampler=sampler(sampler_name, 0, 1), pruner=pruner(pruner_name))
    per_trial: list[float] = []
    pruned = 0
    for _ in range(trials):
        started = time.perf_counter()
        trial = study.ask()
        config = suggest(trial)
        overhead = time.perf_counter() - started
        curve = surrogate().query(task, config, list(range(1, EPOCHS + 1)))  # not timed
        started = time.perf_counter()
        state = optuna.trial.TrialState.COMPLETE
        for epoch, result in enumerate(curve, 1):
            trial.report(result["val_accuracy"], epoch)
            if trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                pruned += 1
                break
        study.tell(trial, result["val_accuracy"] if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        per_trial.append(overhead + time.perf_counter() - started)
    tail = per_trial[-1000:]
    return {
        "trials": trials,
        "sampler": sampler_name,
        "pruner": pruner_name,
        "pruned": pruned,
        "mean_ms": 1000 * statistics.fmean(per_trial),
        "last_1000_mean_ms": 1000 * statistics.fmean(tail),
        "last_1000_p99_ms": 1000 * sorted(tail)[int(0.99 * len(tail)) - 1],
        "best": study.best_value,
        "version": optuna.__version__,
    }


def study_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        records: list[dict[str, Any]] = []
        lock = threading.Lock()

        def objective(trial: optuna.Trial, records: list = records, lock: threading.Lock = lock) -> float:
            config = suggest(trial)

            def report(epoch: int, value: float, _spent: float) -> bool:
                trial.report(value, epoch)
                return trial.should_prune()

            record = run_trial(args.task, config, args.scale, report)
            with lock:
                records.append(record)
            if record["status"] == PRUNED:
                raise optuna.TrialPruned()
            return record["history"][-1]["values"]["val_accuracy"]

        study = optuna.create_study(
            direction="maximize", sampler=sampler(args.sampler, seed, args.workers), pruner=pruner(args.pruner)
        )
        surrogate()  # loaded before the clock, as a worker has it loaded
        started = time.time()
        cpu = time.process_time()
        study.optimize(objective, n_trials=args.trials, n_jobs=args.workers)
        runs.append(
            {
                "seed": seed,
                "task": args.task,
                "workers": args.workers,
                "started": started,
                "ended": time.time(),
                # In-process, the objective's own surrogate queries count too: an upper bound on driver CPU.
                "driver_cpu_s": time.process_time() - cpu,
                "trials": records,
            }
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["reference", "micro", "study"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--trials", type=int, default=130)
    parser.add_argument("--sampler", choices=["random", "tpe"], default="tpe")
    parser.add_argument("--pruner", choices=["none", "median", "hyperband", "asha"], default="asha")
    parser.add_argument("--task", default="3945")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=float, default=3600.0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.mode == "reference":
        result: Any = reference()
    elif args.mode == "micro":
        result = micro(args.trials, args.sampler, args.pruner, args.task)
    else:
        result = {"runs": study_runs(args), "version": optuna.__version__}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
