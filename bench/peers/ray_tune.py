"""Ray Tune: ``tune.Tuner`` over a grid of trivial trials, 2 concurrent, actors reused.

    ray_tune.py --trials 200 --runs 3 [--no-reuse]

``ray.init(num_cpus=2)`` once, outside the clock; each run is one
``Tuner.fit()`` of a fresh grid (Tune's own experiment records written to a
temporary storage path, as it always does).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
warnings.filterwarnings("ignore")

import ray  # noqa: E402
from ray import tune  # noqa: E402


def trivial(config: dict) -> None:
    tune.report({"value": config["x"]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--no-reuse", action="store_true")
    args = parser.parse_args()
    ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    walls = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as storage:
        for run in range(args.runs):
            tuner = tune.Tuner(
                trivial,
                param_space={"x": tune.grid_search(list(range(args.trials)))},
                tune_config=tune.TuneConfig(max_concurrent_trials=args.slots, reuse_actors=not args.no_reuse),
                run_config=tune.RunConfig(name=f"run{run}", storage_path=storage, verbose=0),
            )
            started = time.perf_counter()
            grid = tuner.fit()
            walls.append(time.perf_counter() - started)
            assert len(grid) == args.trials and not grid.errors, grid.errors
    ray.shutdown()
    print(json.dumps({"walls": walls, "trials": args.trials, "version": ray.__version__}))


if __name__ == "__main__":
    main()
