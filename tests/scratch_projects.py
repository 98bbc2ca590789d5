"""Small throwaway projects for tests: a tasks.py, a training script and a grid."""

from __future__ import annotations

import textwrap
from pathlib import Path

TRAIN_SCRIPT = '''
import argparse, sys, time
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--label", default="")
parser.add_argument("--fail", action="store_true")
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()
print(f"training x={args.x} label={args.label!r}", flush=True)
time.sleep(args.sleep)
if args.fail or args.x < 0:
    print(f"diverged at x={args.x}", file=sys.stderr)
    sys.exit(3)
for step in range(3):
    metrics.log(step=step, score=args.x * (step + 1), loss=1.0 / (args.x + step + 1))
print("done", flush=True)
'''


def make_project(root: Path, grid: str, extra_tasks: str = "") -> Path:
    """A project directory with tasks `echo` and `train` (train.py above) and ``grid`` as parameters.yml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN_SCRIPT)
    (root / "tasks.py").write_text(
        "import mlframework as mlf\n\necho = mlf.echo_task()\ntrain = mlf.train_task('train.py')\n"
        + textwrap.dedent(extra_tasks)
    )
    (root / "parameters.yml").write_text(textwrap.dedent(grid))
    return root
