"""A training script over the LCBench surrogate: 52 epochs, one surrogate query and one report per epoch.

    python train.py --OpenML_task_id=3945 --batch_size=64 --learning_rate=0.01 --momentum=0.9 \
        --weight_decay=0.001 --num_layers=3 --max_units=256 --max_dropout=0.2 [--time_scale=3600]

Each epoch asks the surrogate for that epoch's ``val_accuracy`` (percent) and
``time`` (simulated seconds of training up to that epoch), sleeps the simulated
time of the epoch divided by ``--time_scale`` (default 3600: one simulated hour
per wall-clock second; ``$MLFRAMEWORK_LCBENCH_SCALE`` overrides the default) and
reports ``metrics.log(step=epoch, val_accuracy=..., sim_time=...)``. SIGTERM
(a pruned trial) ends it at once with status 143.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository: bench.lcbench, mlframework.metrics

from bench.lcbench import EPOCHS, HYPERPARAMETERS, SCALE_ENV, Surrogate
from mlframework import metrics


def _stop(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)  # also interrupts the sleep below
    parser = argparse.ArgumentParser()
    parser.add_argument("--OpenML_task_id", required=True)
    for name in HYPERPARAMETERS:
        parser.add_argument(f"--{name}", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--time_scale", type=float, default=float(os.environ.get(SCALE_ENV, 3600)))
    args, _unknown = parser.parse_known_args()  # other fixed parameters of a sweep are ignored
    config = {name: getattr(args, name) for name in HYPERPARAMETERS}
    surrogate = Surrogate()
    spent = 0.0
    for epoch in range(1, args.epochs + 1):
        result = surrogate.query(args.OpenML_task_id, config, [epoch])[0]
        time.sleep(max(result["time"] - spent, 0.0) / args.time_scale)
        spent = max(spent, result["time"])
        metrics.log(step=epoch, val_accuracy=result["val_accuracy"], sim_time=spent)
        print(f"epoch {epoch}: val_accuracy={result['val_accuracy']:.3f} sim_time={spent:.1f}s", flush=True)


if __name__ == "__main__":
    main()
