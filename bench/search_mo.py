"""Two objectives on LCBench: the hypervolume a multi-objective search reaches at equal simulated GPU time.

Objectives: ``val_accuracy`` (max) and ``time`` (min, the surrogate's training time to that epoch), each
trial's values at its last epoch. Each search runs through our ``SearchSource`` in-process (what the driver
calls: ask, one report per epoch, tell), one trial at a time, until the simulated time of every epoch run,
pruned trials' included, reaches ``--fraction`` of the LCBench reference grid's (2,592 points x 52 epochs).
The trial that crosses the budget is cut there and never counts. The result is the hypervolume regret:
1 - HV(front found) / HV(grid's front), both with the grid's worst accuracy and slowest time as the reference
point. Systems: ``motpe`` (Optuna's multi-objective TPE, no pruning), ``nsga2`` (Optuna's NSGA-II, its
defaults, no pruning), ``mobohb+moasha`` (ours: ``--search bohb --prune asha`` with two objectives),
``motpe+moasha`` (``--search tpe --prune asha``), ``mobohb`` (``--search bohb``, no pruning), ``random``,
``random+moasha``.

Run it with the peers' venv (onnxruntime); the framework's own packages (``.venv``) come after its own.
It needs the LCBench data (bench/lcbench.py)::

    bench/.venv-peers/bin/python bench/search_mo.py --tasks 189866,167149,168330,167104,168868 --seeds 5 \\
        --fraction 0.02 --systems motpe,nsga2,mobohb+moasha --out mo.jsonl
    bench/.venv-peers/bin/python bench/search_mo.py --tasks 7593 --systems mobohb+moasha --rungs 1,4
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# The peers' venv runs it (onnxruntime); the framework's own packages come after its own.
sys.path.extend(str(p) for p in (REPO / ".venv" / "lib").glob("python3*/site-packages"))

import optuna  # noqa: E402

from bench.lcbench import EPOCHS, GRID, HYPERPARAMETERS, Surrogate  # noqa: E402
from mlframework.sweep.params.space import parse_space  # noqa: E402
from mlframework.sweep.records.objectives import Objective  # noqa: E402
from mlframework.sweep.records.pareto import pareto_front  # noqa: E402
from mlframework.sweep.search.plan import SearchSettings  # noqa: E402
from mlframework.sweep.search.pruners import MultiObjectiveSuccessiveHalving  # noqa: E402
from mlframework.sweep.search.study import SearchSource  # noqa: E402

SPACE = Path(__file__).resolve().parent / "projects" / "lcbench" / "search.yml"
OBJECTIVES = (Objective("val_accuracy", "max"), Objective("time", "min"))
SYSTEMS = {
    "motpe": ("tpe", "none"),
    "nsga2": ("nsga2", "none"),
    "motpe+moasha": ("tpe", "asha"),
    "mobohb": ("bohb", "none"),
    "mobohb+moasha": ("bohb", "asha"),
    "random": ("random", "none"),
    "random+moasha": ("random", "asha"),
}


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area (accuracy above, time below the reference) that (accuracy, time) points dominate."""
    area, best = 0.0, reference[0]
    inside = [p for p in set(points) if p[0] > reference[0] and p[1] < reference[1]]
    for accuracy, spent in sorted(inside, key=lambda p: (p[1], -p[0])):  # fastest first: each adds a strip
        if accuracy > best:
            area += (reference[1] - spent) * (accuracy - best)
            best = accuracy
    return area


def search(
    surrogate: Surrogate, task: str, system: str, seed: int, budget: float, rungs: tuple[int, int] | None = None
) -> dict[str, Any]:
    """One search until ``budget`` simulated seconds are spent: its front, trials and pruned trials.

    ``rungs``: MO-ASHA's minimum resource (epochs) and reduction factor; None: ``--prune asha``'s.
    """
    sampler, prune = SYSTEMS[system]
    space = parse_space(SPACE.read_text(), str(SPACE))
    records: list[Any] = []
    spent, pruned = 0.0, 0
    with tempfile.TemporaryDirectory(prefix="mlframework-mo-") as directory:
        ours = "tpe" if sampler == "nsga2" else sampler
        settings = SearchSettings(sampler=ours, trials=1_000_000, seed=seed, prune=prune)
        source = SearchSource(space, settings, Path(directory), "mo", "val_accuracy", "max", OBJECTIVES)
        if sampler == "nsga2":  # Optuna's NSGA-II with its defaults (population 50), in our source's study
            source.study.sampler = optuna.samplers.NSGAIISampler(seed=seed)
        if source.vector_pruner is not None and rungs is not None:
            source.vector_pruner = MultiObjectiveSuccessiveHalving([True, False], *rungs, source._vector_rung)
        while spent < budget:
            asked = source.ask()
            assert asked is not None
            number, params = asked
            config = {name: float(params[name]) for name in HYPERPARAMETERS}
            curve = surrogate.query(task, config, list(range(1, EPOCHS + 1)))
            status, last = "SUCCESS", curve[-1]
            for epoch, point in enumerate(curve, 1):
                values = {"val_accuracy": point["val_accuracy"], "time": point["time"]}
                if spent + point["time"] >= budget:
                    status, last = "CUT", point
                    break
                if source.report(number, [{"step": epoch, "values": values}]):
                    status, last = "PRUNED", point
                    break
            spent += last["time"]
            metrics = {"val_accuracy": last["val_accuracy"], "time": last["time"]}
            record = {"status": "SUCCESS" if status == "SUCCESS" else "FAILURE", "metrics": metrics}
            told = source.tell(number, {**record, "stopped": "pruned" if status == "PRUNED" else None})
            pruned += told == "PRUNED"
            records.append({"trial": f"t{number}", "index": number, **record})
        source.close()
    front = [(r["metrics"]["val_accuracy"], r["metrics"]["time"]) for r in pareto_front(records, OBJECTIVES)]
    complete = sum(r["status"] == "SUCCESS" for r in records)
    return {"front": front, "trials": len(records), "pruned": pruned, "complete": complete}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="7593,167104")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.02, help="of the grid's simulated GPU time")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--rungs", default="", help="MO-ASHA's minimum epochs and reduction factor (default: ours)")
    parser.add_argument("--out", help="a JSON lines file: one row per search")
    args = parser.parse_args(argv)
    surrogate = Surrogate()
    regrets: dict[tuple[str, str], list[float]] = {}
    for task in args.tasks.split(","):
        configs = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
        grid = [(c[0]["val_accuracy"], c[0]["time"]) for c in surrogate.query_many(task, configs, [EPOCHS])]
        reference = (min(a for a, _ in grid), max(t for _, t in grid))
        best = hypervolume(grid, reference)
        budget = args.fraction * sum(t for _, t in grid)
        for system in args.systems.split(","):
            for seed in range(args.seeds):
                started = time.monotonic()
                rungs = tuple(int(part) for part in args.rungs.split(",")) if args.rungs else None
                found = search(surrogate, task, system, seed, budget, rungs)  # type: ignore[arg-type]
                regret = 1 - hypervolume(found["front"], reference) / best
                regrets.setdefault((task, system), []).append(regret)
                if args.out:
                    row = {"task": task, "system": system, "seed": seed, "regret": regret, "rungs": args.rungs}
                    row.update({key: found[key] for key in ("trials", "pruned", "complete")})
                    with open(args.out, "a") as out:
                        out.write(json.dumps(row) + "\n")
                top = max((accuracy for accuracy, _ in found["front"]), default=0.0)
                print(
                    f"task {task} {system} seed {seed}: {found['trials']} trials ({found['pruned']} pruned, "
                    f"{found['complete']} complete), best accuracy {top:.1f}, "
                    f"front of {len(found['front'])}, hypervolume regret {regret:.3f} "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
    print("task     system          median   min    max   (hypervolume regret, lower is better)")
    for (task, system), values in regrets.items():
        print(f"{task:8} {system:15} {statistics.median(values):.3f}  {min(values):.3f}  {max(values):.3f}")


if __name__ == "__main__":
    main()
