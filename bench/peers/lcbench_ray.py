"""Ray Tune on LCBench: OptunaSearch (TPE) + ASHAScheduler over the same space, scaled sleeps.

    lcbench_ray.py --task 3945 --seeds 0,1 --workers 2 --trials 130 --scale 3600 --out FILE

``ray.init(num_cpus=WORKERS)`` once, outside the clock (its time is in each run as ``ray_init_s``); each seed is one
``Tuner.fit()`` with ``max_concurrent_trials=WORKERS``; the trainable runs
the epochs of bench/peers/lcbench_common.py and reports each to Tune. The
records are taken in the driver by a Tune callback: a report's ``time`` is
stamped in the trainable, a trial's ``finished_at`` when the driver learns it
ended. ASHA: ``grace_period=1, reduction_factor=3, max_t=52`` epochs. Writes
the runs as JSON to FILE and prints ``{"out": FILE}`` last.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
warnings.filterwarnings("ignore")

import optuna  # noqa: E402
import ray  # noqa: E402
from lcbench_common import EPOCHS, run_trial, space  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from mlframework.statuses import PRUNED, SUCCESS  # noqa: E402  (the repository is on sys.path: lcbench_common)


def param_space() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, dist in space().items():
        if dist["type"] == "int":  # Tune's integer bounds exclude the upper one
            out[name] = (tune.lograndint if dist["log"] else tune.randint)(dist["low"], dist["high"] + 1)
        else:
            out[name] = (tune.loguniform if dist["log"] else tune.uniform)(dist["low"], dist["high"])
    return out


def trainable(config: dict[str, Any]) -> None:
    params = {k: v for k, v in config.items() if k not in ("task", "scale")}

    def report(epoch: int, value: float, spent: float) -> bool:
        tune.report({"val_accuracy": value, "sim_time": spent, "epoch": epoch, "reported_at": time.time()})
        return False  # Tune stops the trainable itself when ASHA says so

    run_trial(config["task"], params, config["scale"], report)


class Recorder(tune.Callback):
    def __init__(self) -> None:
        self.trials: dict[str, dict[str, Any]] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.trials[trial.trial_id] = {"started_at": time.time(), "history": [], "status": SUCCESS}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.record(trial.trial_id, result)

    def record(self, trial_id: str, result: dict) -> None:
        """A report, once (the stopper hands on the one that matched: Tune ends the run before the callbacks see it)."""
        record = self.trials.setdefault(trial_id, {"started_at": time.time(), "history": [], "status": SUCCESS})
        if record["history"] and record["history"][-1]["time"] == result["reported_at"]:
            return
        values = {"val_accuracy": result["val_accuracy"], "sim_time": result["sim_time"]}
        record["history"].append({"time": result["reported_at"], "step": result["epoch"], "values": values})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.trials[trial.trial_id]
        record["finished_at"] = time.time()
        if not record["history"] or record["history"][-1]["step"] < EPOCHS:
            record["status"] = PRUNED


class StopAtTarget(tune.Stopper):
    """Ends the experiment at the first report that matches the target (the figures stop there too)."""

    def __init__(self, target: float, recorder: Recorder) -> None:
        self.target = target
        self.recorder = recorder
        self.hit = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        if not self.hit and result["val_accuracy"] >= self.target:
            self.hit = True
            self.recorder.record(trial_id, result)
        return False

    def stop_all(self) -> bool:
        return self.hit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--task", default="3945")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=130)
    parser.add_argument("--scale", type=float, default=3600.0)
    parser.add_argument("--target", type=float, default=float("inf"), help="stop at this val_accuracy")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    initialized = time.time()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    init_s = time.time() - initialized  # once per process, outside each run's clock: reported beside it
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-lcbench-") as storage:
        for seed in [int(s) for s in args.seeds.split(",")]:
            recorder = Recorder()
            search = OptunaSearch(
                sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=args.workers > 1),
                metric="val_accuracy",
                mode="max",
            )
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=EPOCHS, grace_period=1, reduction_factor=3)
            tuner = tune.Tuner(
                trainable,
                param_space={**param_space(), "task": args.task, "scale": args.scale},
                tune_config=tune.TuneConfig(
                    metric="val_accuracy",
                    mode="max",
                    search_alg=search,
                    scheduler=scheduler,
                    num_samples=args.trials,
                    max_concurrent_trials=args.workers,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=f"seed{seed}",
                    storage_path=storage,
                    verbose=0,
                    callbacks=[recorder],
                    stop=StopAtTarget(args.target, recorder),
                ),
            )
            started = time.time()
            cpu = time.process_time()
            grid = tuner.fit()
            ended = time.time()
            assert not grid.errors, grid.errors
            runs.append(
                {
                    "seed": seed,
                    "task": args.task,
                    "workers": args.workers,
                    "started": started,
                    "ended": ended,
                    "driver_cpu_s": time.process_time() - cpu,
                    "ray_init_s": init_s,
                    # Trials still running when the run stopped at the target: ended then, neither done nor pruned.
                    "trials": [
                        r if "finished_at" in r else {**r, "finished_at": ended, "status": "STOPPED"}
                        for r in recorder.trials.values()
                    ],
                }
            )
    ray.shutdown()
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"runs": runs, "version": ray.__version__}, handle)
    print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
