"""A training script as people write them, with no tasks.py around it: argparse, str2bool flags, an output dir.

Standard library only. It "trains" a one-parameter model for --epochs epochs, prints
``epoch N: loss X val_loss Y`` and writes ``OUT_DIR/model.json``. Its command and argument style
are given in parameters.yml (the ``mlframework:`` section): this project has no tasks.py.
"""

import argparse
import json
import math
import os


def str2bool(text: str) -> bool:
    """Read True/False (and yes/no, 1/0) as W&B passes them: --augment=False."""
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--augment", type=str2bool, default=True)  # a default of True: only --augment=False turns it off
parser.add_argument("--out_dir", default="out")
args = parser.parse_args()

weight, target = 0.0, 3.0
for epoch in range(1, args.epochs + 1):
    weight += args.lr * (target - weight)
    loss = (target - weight) ** 2
    val_loss = loss * (0.8 if args.augment else 1.1) + 0.01 * math.log1p(epoch)
    print(f"epoch {epoch}: loss {loss:.4f} val_loss {val_loss:.4f}", flush=True)

os.makedirs(args.out_dir, exist_ok=True)
with open(os.path.join(args.out_dir, "model.json"), "w") as handle:
    json.dump({"weight": weight, "lr": args.lr, "augment": args.augment}, handle)
