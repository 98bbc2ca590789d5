"""Our search's own overhead per trial: SearchSource's ask, 52 reports and tell in-process, no workers, no broker.

What the driver calls for each trial of ``--search S --prune P`` (sweep/search/study.py),
in the order it calls them: ``ask``; ``report`` once per epoch (the worst case:
a decision at every report; a worker batches several epochs into one metrics
event when they come fast), until the pruner says stop; ``tell`` with the
record a worker writes (a pruned trial's: FAILURE, stopped). The curves are
synthetic and LCBench-like (a saturating accuracy over 52 epochs, its ceiling
and speed set by the 7 hyperparameters of bench/projects/lcbench/search.yml),
computed before the clock starts. The study's journal is a real file in a
temporary directory, fsynced where the driver fsyncs it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mlframework.sweep.params.space import parse_space
from mlframework.sweep.records.objectives import Objective
from mlframework.sweep.search.plan import SearchSettings
from mlframework.sweep.search.study import SearchSource

EPOCHS = 52
SPACE = Path(__file__).resolve().parent / "projects" / "lcbench" / "search.yml"


def curve(params: dict[str, Any]) -> list[float]:
    """A validation-accuracy curve (percent) over 52 epochs for one configuration: deterministic, LCBench-like."""
    lr = math.log10(params["learning_rate"])  # -4 .. -1
    ceiling = 97.0 - 6.0 * (lr + 2.5) ** 2 - 20.0 * params["weight_decay"] - 8.0 * (params["max_dropout"] - 0.3) ** 2
    ceiling -= 3.0 * abs(params["momentum"] - 0.9) + 0.5 * abs(params["num_layers"] - 3)
    speed = 3.0 + 4.0 * abs(lr + 3.0) + math.log2(params["batch_size"]) / 2
    wobble = math.sin(params["max_units"] * 0.37)
    return [ceiling * (1 - math.exp(-epoch / speed)) + 0.2 * wobble * math.sin(epoch) for epoch in range(1, EPOCHS + 1)]


def seconds_per_epoch(params: dict[str, Any]) -> float:
    """A second objective's cost, LCBench-like: wider and deeper networks and smaller batches train slower."""
    return (1 + params["max_units"] / 256) * params["num_layers"] * (512 / params["batch_size"]) ** 0.5


def run(sampler: str, prune: str, trials: int, seed: int = 0, objectives: int = 1) -> dict[str, Any]:
    """``trials`` trials through a SearchSource; mean ms/trial overall and over the last 1,000, p99, pruned.

    ``objectives`` 2: ``val_accuracy`` (max) and ``time_s`` (min, :func:`seconds_per_epoch` x epochs), each
    report carrying both, as a multi-objective sweep's.
    """
    space = parse_space(SPACE.read_text(), str(SPACE))
    both = (Objective("val_accuracy", "max"), Objective("time_s", "min"))
    per_trial: list[float] = []
    pruned = 0
    with tempfile.TemporaryDirectory(prefix="mlframework-micro-") as directory:
        settings = SearchSettings(sampler=sampler, trials=trials, seed=seed, prune=prune)
        source = SearchSource(
            space, settings, Path(directory), "micro", "val_accuracy", "max", both if objectives == 2 else ()
        )
        for _ in range(trials):
            started = time.perf_counter()
            asked = source.ask()
            spent = time.perf_counter() - started
            assert asked is not None
            number, params = asked
            values = curve(params)  # not timed
            cost = seconds_per_epoch(params)
            started = time.perf_counter()
            stop = False
            for epoch, value in enumerate(values, 1):
                reported = (
                    {"val_accuracy": value, "time_s": cost * epoch} if objectives == 2 else {"val_accuracy": value}
                )
                if source.report(number, [{"step": epoch, "values": reported}]):
                    stop = True
                    break
            last = reported
            record = (
                {"status": "FAILURE", "stopped": True, "metrics": last}
                if stop
                else {"status": "SUCCESS", "metrics": last}
            )
            pruned += source.tell(number, record) == "PRUNED"
            per_trial.append(spent + time.perf_counter() - started)
        source.close()
    tail = sorted(per_trial[-1000:])
    return {
        "trials": trials,
        "sampler": sampler,
        "prune": prune,
        "objectives": objectives,
        "pruned": pruned,
        "mean_ms": 1000 * statistics.fmean(per_trial),
        "last_1000_mean_ms": 1000 * statistics.fmean(tail),
        "last_1000_p99_ms": 1000 * tail[max(int(0.99 * len(tail)) - 1, 0)],
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.search_micro --sampler S --prune P --trials N [--seed K] [--objectives 2]``: one JSON line
    of :func:`run`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--prune", default="asha")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objectives", type=int, choices=(1, 2), default=1)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.sampler, args.prune, args.trials, args.seed, args.objectives)))


if __name__ == "__main__":
    main()
