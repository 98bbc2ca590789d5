"""Searches on LCBench in simulated time: W workers, no sleeps, the regret at 1%, 2% and 5% of the grid's GPU hours.

Run in the peers' venv (it has the surrogate's onnxruntime), with the framework's
packages after its own::

    bench/.venv-peers/bin/python bench/search_sim.py --tasks 3945,7593 --seeds 0,1 --workers 2 \\
        --trials 130 --systems ours-tpe-asha,ours-bohb-asha,optuna-tpe-hyperband --out FILE

A discrete-event simulation of the search's decisions, free of the machine's
load: W workers; a free worker asks the system for a trial, whose 52 epochs the
surrogate gives at once (``time``: the simulated seconds to each epoch); each
epoch's report arrives at the trial's start plus its ``time``, in simulated-clock
order across workers; a pruned trial's worker asks at once. Ours is our
``SearchSource`` (``--search S --prune P``, its study journal in a temporary
directory) as the driver calls it; Optuna alone is ``TPESampler(constant_liar=
W > 1)`` with its own ``HyperbandPruner(1, 52, 3)`` (or ``SuccessiveHalvingPruner
(1, 3)``) through ask, report/should_prune and tell, as bench/peers/lcbench_optuna.py
configures it. Ray Tune is Ray's own ``OptunaSearch(TPESampler(constant_liar=W > 1))``
and ``ASHAScheduler(grace_period=1, reduction_factor=3, max_t=52)`` objects,
called as Tune's ``TuneController`` calls them (bench/peers/lcbench_ray.py's
settings): a report goes to the scheduler, then, unless it stops the trial, to
the searcher; a stopped or finished trial ends with ``on_trial_complete`` and
its last report on both, so Optuna is told a stopped trial's last value as
COMPLETE, as in Tune. What it leaves out: the driver's and workers' own latency
(reports reach the pruner at once) — the rows of ``bench/run.sh --only search``
keep it.

Regret at a fraction f: the grid's best ``val_accuracy`` (2,592 points at epoch
52) minus the best reported while the GPU hours spent (every trial's simulated
time so far, pruned trials' included) were at most f of the grid's total; a run
that ends before spending f counts with its final best.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench" / "peers"))
sys.path.extend(str(p) for p in (REPO / ".venv" / "lib").glob("python3*/site-packages"))

from lcbench_common import space, surrogate  # noqa: E402

from bench.lcbench import EPOCHS, GRID, HYPERPARAMETERS  # noqa: E402

FRACTIONS = (0.01, 0.02, 0.05)
CURVE_FRACTIONS = tuple(0.001 * 10 ** (i / 20) for i in range(35))  # 0.1% to 5.0% of the grid's GPU hours
LABELS = {
    "ours-bohb-hyperband": "ours, --search bohb --prune hyperband",
    "ours-bohb-asha": "ours, --search bohb --prune asha",
    "ours-tpe-hyperband": "ours, --search tpe --prune hyperband",
    "ours-tpe-asha": "ours, --search tpe --prune asha",
    "optuna-tpe-hyperband": "Optuna alone, TPE + Hyperband",
    "optuna-tpe-asha": "Optuna alone, TPE + ASHA",
    "ray-tpe-asha": "Ray Tune, OptunaSearch + ASHA",
}


def grid_reference(task: str) -> tuple[float, float]:
    """The grid's best val_accuracy and its total simulated hours on ``task``."""
    keys = list(GRID)
    points = [dict(zip(keys, values)) for values in itertools.product(*(GRID[k] for k in keys))]
    results = [row[0] for row in surrogate().query_many(task, points, [EPOCHS])]
    return max(r["val_accuracy"] for r in results), sum(r["time"] for r in results) / 3600


class Ours:
    """Our SearchSource, as the driver calls it."""

    def __init__(self, sampler: str, prune: str, task: str, seed: int, trials: int, directory: Path) -> None:
        from mlframework.sweep.params.space import parse_space
        from mlframework.sweep.search.plan import SearchSettings
        from mlframework.sweep.search.study import SearchSource

        text = (REPO / "bench" / "projects" / "lcbench" / "search.yml").read_text()
        text = text.replace('OpenML_task_id: "3945"', f'OpenML_task_id: "{task}"')
        settings = SearchSettings(sampler=sampler, trials=trials, seed=seed, prune=prune)
        self.source = SearchSource(parse_space(text), settings, directory, "sim", "val_accuracy", "max")
        self.decision_s: list[float] = []

    def ask(self) -> tuple[int, dict[str, float]]:
        started = time.perf_counter()
        asked = self.source.ask()
        self.decision_s.append(time.perf_counter() - started)
        assert asked is not None
        number, params = asked
        return number, {name: params[name] for name in HYPERPARAMETERS}

    def report(self, handle: int, epoch: int, value: float) -> bool:
        started = time.perf_counter()
        stop = self.source.report(handle, [{"step": epoch, "values": {"val_accuracy": value}}])
        self.decision_s.append(time.perf_counter() - started)
        return stop

    def tell(self, handle: int, value: float, pruned: bool) -> None:
        record = {"status": "FAILURE" if pruned else "SUCCESS", "stopped": pruned, "metrics": {"val_accuracy": value}}
        self.source.tell(handle, record)  # type: ignore[arg-type]

    def close(self) -> None:
        self.source.close()


class OptunaAlone:
    """Optuna's TPE with its own pruner, through ask and tell (bench/peers/lcbench_optuna.py's settings)."""

    def __init__(self, pruner: str, seed: int, workers: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        pruners = {
            "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3),
            "asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        }
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=workers > 1)
        self.study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruners[pruner])
        self.trials: dict[int, Any] = {}
        self.decision_s: list[float] = []

    def ask(self) -> tuple[int, dict[str, float]]:
        started = time.perf_counter()
        trial = self.study.ask()
        config: dict[str, float] = {}
        for name, dist in space().items():
            suggest = trial.suggest_int if dist["type"] == "int" else trial.suggest_float
            config[name] = suggest(name, dist["low"], dist["high"], log=dist["log"])
        self.decision_s.append(time.perf_counter() - started)
        self.trials[trial.number] = trial
        return trial.number, config

    def report(self, handle: int, epoch: int, value: float) -> bool:
        started = time.perf_counter()
        trial = self.trials[handle]
        trial.report(value, epoch)
        stop = bool(trial.should_prune())
        self.decision_s.append(time.perf_counter() - started)
        return stop

    def tell(self, handle: int, value: float, pruned: bool) -> None:
        state = self.optuna.trial.TrialState
        trial = self.trials.pop(handle)
        if pruned:
            self.study.tell(trial, state=state.PRUNED)
        else:
            self.study.tell(trial, value)

    def close(self) -> None:
        pass


class RayTune:
    """Ray Tune's OptunaSearch and ASHAScheduler, called as Tune's TuneController calls them."""

    def __init__(self, seed: int, workers: int) -> None:
        import optuna
        from lcbench_ray import param_space
        from ray.tune.schedulers import ASHAScheduler, TrialScheduler
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=workers > 1)
        self.searcher = OptunaSearch(sampler=sampler, metric="val_accuracy", mode="max")
        self.searcher.set_search_properties("val_accuracy", "max", param_space())  # as Tuner(param_space=...) does
        self.scheduler = ASHAScheduler(time_attr="training_iteration", max_t=EPOCHS, grace_period=1, reduction_factor=3)
        self.scheduler.set_search_properties("val_accuracy", "max")
        self.stop = TrialScheduler.STOP
        self.last: dict[int, dict[str, float]] = {}
        self.decision_s: list[float] = []
        self.number = itertools.count()

    def _trial(self, handle: int) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(trial_id=str(handle))  # all the scheduler reads of a Trial

    def ask(self) -> tuple[int, dict[str, float]]:
        started = time.perf_counter()
        handle = next(self.number)
        config = self.searcher.suggest(str(handle))
        assert config is not None
        self.scheduler.on_trial_add(None, self._trial(handle))  # type: ignore[arg-type]
        self.decision_s.append(time.perf_counter() - started)
        return handle, {name: config[name] for name in HYPERPARAMETERS}

    def report(self, handle: int, epoch: int, value: float) -> bool:
        started = time.perf_counter()
        result = {"training_iteration": epoch, "val_accuracy": value}
        self.last[handle] = result
        stop = self.scheduler.on_trial_result(None, self._trial(handle), result) == self.stop  # type: ignore[arg-type]
        if not stop:
            self.searcher.on_trial_result(str(handle), result)
        self.decision_s.append(time.perf_counter() - started)
        return stop

    def tell(self, handle: int, value: float, pruned: bool) -> None:
        result = self.last.pop(handle)
        self.scheduler.on_trial_complete(None, self._trial(handle), result)  # type: ignore[arg-type]
        self.searcher.on_trial_complete(str(handle), result=result)

    def close(self) -> None:
        pass


def system(name: str, task: str, seed: int, workers: int, trials: int, directory: Path) -> Ours | OptunaAlone | RayTune:
    """``ours-SAMPLER-PRUNER``, ``optuna-tpe-PRUNER`` or ``ray-tpe-asha``."""
    kind, sampler, prune = name.split("-")
    if kind == "ours" and sampler == "bohbplain":
        # BOHB without boundary mass (an ablation): no random draws on the bounds, kernels reflected inside.
        from mlframework.sweep.search.bohb import BohbSampler, BohbSettings

        ours = Ours("bohb", prune, task, seed, trials, directory)
        assert isinstance(ours.source.study.sampler, BohbSampler)
        ours.source.study.sampler.settings = BohbSettings(edge_probability=0.0, clip=False)
        return ours
    if kind == "ours":
        return Ours(sampler, prune, task, seed, trials, directory)
    if kind == "ray":
        return RayTune(seed, workers)
    return OptunaAlone(prune, seed, workers)


def simulate(name: str, task: str, seed: int, workers: int, trials: int, max_hours: float = math.inf) -> dict[str, Any]:
    """One run: the trajectory of (GPU hours spent, best so far) at each report, and the decision costs.

    No trial is asked once ``trials`` were, or once ``max_hours`` GPU hours are spent.
    """
    with tempfile.TemporaryDirectory(prefix="mlframework-sim-") as directory:
        searcher = system(name, task, seed, workers, trials, Path(directory))
        events: list[tuple[float, int, int, int]] = []  # (clock, order, trial handle, epoch)
        curves: dict[int, list[dict[str, float]]] = {}
        started_at: dict[int, float] = {}
        spent: dict[int, float] = {}
        order = itertools.count()
        asked = 0
        best = -math.inf
        trajectory: list[tuple[float, float]] = []

        def start(clock: float) -> None:
            nonlocal asked
            if asked >= trials or sum(spent.values()) / 3600 >= max_hours:
                return
            asked += 1
            handle, config = searcher.ask()
            curves[handle] = surrogate().query(task, config, list(range(1, EPOCHS + 1)))
            started_at[handle] = clock
            heapq.heappush(events, (clock + curves[handle][0]["time"], next(order), handle, 1))

        for _ in range(workers):
            start(0.0)
        pruned = 0
        while events:
            clock, _, handle, epoch = heapq.heappop(events)
            result = curves[handle][epoch - 1]
            spent[handle] = result["time"]
            value = result["val_accuracy"]
            best = max(best, value)
            trajectory.append((sum(spent.values()) / 3600, best))
            stop = searcher.report(handle, epoch, value)
            if stop or epoch == EPOCHS:
                searcher.tell(handle, value, stop and epoch < EPOCHS)
                pruned += stop and epoch < EPOCHS
                start(clock)
            else:
                heapq.heappush(
                    events, (started_at[handle] + curves[handle][epoch]["time"], next(order), handle, epoch + 1)
                )
        searcher.close()
    costs = sorted(searcher.decision_s)
    return {
        "system": name,
        "task": task,
        "seed": seed,
        "workers": workers,
        "trials": trials,
        "pruned": pruned,
        "trajectory": trajectory,
        "decision_ms_mean": 1000 * statistics.fmean(costs),
        "decision_ms_p99": 1000 * costs[max(math.ceil(0.99 * len(costs)) - 1, 0)],
    }


def regret_at(trajectory: list[tuple[float, float]], grid_best: float, hours: float) -> float:
    """The grid's best minus the best reported while at most ``hours`` were spent (the final best if never)."""
    found = -math.inf
    for spent, best in trajectory:
        if spent > hours:
            break
        found = best
    return grid_best - found


def regret_curve(run: dict[str, Any], grid_best: float, grid_hours: float) -> list[float]:
    """The run's regret at each of :data:`CURVE_FRACTIONS` of the grid's GPU hours."""
    return [regret_at(run["trajectory"], grid_best, f * grid_hours) for f in CURVE_FRACTIONS]


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Regret over GPU hours, one line per system (median over tasks x seeds, the band from 25% to 75%), a panel a
    worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = sorted({run["workers"] for run in runs})
    figure, axes = plt.subplots(1, len(counts), figsize=(6 * len(counts), 4.2), sharey=True, squeeze=False)
    x = [100 * f for f in CURVE_FRACTIONS]
    for axis, workers in zip(axes[0], counts):
        names = list(dict.fromkeys(run["system"] for run in runs if run["workers"] == workers))
        for name in names:
            curves = np.array([run["curve"] for run in runs if run["workers"] == workers and run["system"] == name])
            line = axis.plot(x, np.median(curves, axis=0), label=f"{LABELS.get(name, name)} ({len(curves)} runs)")
            low, high = np.percentile(curves, [25, 75], axis=0)
            axis.fill_between(x, low, high, color=line[0].get_color(), alpha=0.15, linewidth=0)
        for fraction in FRACTIONS:
            axis.axvline(100 * fraction, color="grey", linewidth=0.6, linestyle=":")
        axis.set_xscale("log")
        axis.set_yscale("symlog", linthresh=0.1)
        axis.set_yticks([0, 0.1, 0.3, 1, 3, 10, 30], ["0", "0.1", "0.3", "1", "3", "10", "30"])
        axis.set_xlabel("GPU hours spent, % of the reference grid's")
        axis.set_title(f"{workers} workers")
        axis.grid(True, which="major", linewidth=0.3)
    axes[0][0].set_ylabel("regret, val_accuracy pp (median; band 25-75%)")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle("LCBench (YAHPO Gym surrogate), simulated time: grid's best minus best found")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def table(runs: list[dict[str, Any]], workers: int, trials: int) -> str:
    """A markdown table of median (min-max) regret at :data:`FRACTIONS` for the runs on ``workers`` workers."""
    rows = [f"| system ({workers} workers, {trials} trials) | regret at 1% | at 2% | at 5% | runs |"]
    rows.append("|:--|--:|--:|--:|--:|")
    for name in dict.fromkeys(run["system"] for run in runs if run["workers"] == workers):
        mine = [run for run in runs if run["workers"] == workers and run["system"] == name]
        cells = []
        for f in FRACTIONS:
            values = [run["regret"][str(f)] for run in mine]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        rows.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + f" | {len(mine)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Runs every system x task x seed x worker count; prints a table of median (min-max) regret a worker count,
    writes every run as JSON and draws the regret curves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="3945,34539,126025")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", default="2", help="worker counts, e.g. 2,4")
    parser.add_argument("--trials", type=int, default=130)
    parser.add_argument(
        "--until", type=float, default=math.inf, help="ask no trial past this fraction of the grid's hours"
    )
    parser.add_argument("--systems", default="ours-tpe-asha,ours-bohb-asha,optuna-tpe-hyperband")
    parser.add_argument("--out", type=Path, help="every run as JSON")
    parser.add_argument("--figure", type=Path, help="the regret curves as PNG")
    parser.add_argument("--replot", type=Path, help="draw --figure and print the tables from this --out file")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads(args.replot.read_text())
        for workers in sorted({run["workers"] for run in saved["runs"]}):
            print(table(saved["runs"], workers, saved["runs"][0]["trials"]) + "\n")
        if args.figure:
            plot(saved["runs"], args.figure)
        return
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    references = {task: grid_reference(task) for task in tasks}
    runs = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for name in args.systems.split(","):
            for task in tasks:
                best, total = references[task]
                for seed in seeds:
                    run = simulate(name, task, seed, workers, args.trials, args.until * total)
                    run["regret"] = {str(f): regret_at(run["trajectory"], best, f * total) for f in FRACTIONS}
                    run["curve"] = regret_curve(run, best, total)
                    run["spent_fraction"] = run["trajectory"][-1][0] / total
                    del run["trajectory"]  # the curve keeps what the figure needs
                    runs.append(run)
                    print(
                        f"{name} w{workers} task {task} seed {seed}: regret "
                        + " / ".join(f"{run['regret'][str(f)]:.3f}" for f in FRACTIONS)
                        + f" pp; spent {run['spent_fraction']:.3f} of the grid; {run['pruned']} pruned;"
                        f" decision {run['decision_ms_mean']:.2f} ms mean",
                        file=sys.stderr,
                        flush=True,
                    )
                    if args.out:  # after every run, so a long run's results so far are never lost
                        args.out.write_text(json.dumps({"references": references, "runs": runs}))
        print(table(runs, workers, args.trials) + "\n", flush=True)
    if args.figure:
        plot(runs, args.figure)


if __name__ == "__main__":
    main()
