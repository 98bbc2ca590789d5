"""A throwaway project for search tests: a script that learns slowly, logs each step and its pid."""

from __future__ import annotations

import textwrap
from pathlib import Path

SEARCH_SCRIPT = """
import argparse, os, sys, time
from pathlib import Path
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--pause", type=float, default=0.3)
parser.add_argument("--fail-first", action="store_true")
args = parser.parse_args()
trial = os.environ["MLFRAMEWORK_TRIAL_ID"]
here = Path(__file__).parent
(here / "pids").mkdir(exist_ok=True)
(here / "pids" / trial).write_text(str(os.getpid()))
if args.fail_first:
    marker = here / "attempts" / trial
    marker.parent.mkdir(exist_ok=True)
    if not marker.exists():
        marker.write_text("1")
        sys.exit(4)
for step in range(args.steps):
    time.sleep(args.pause)
    metrics.log(step=step, score=args.x * (step + 1))
"""

SPACE = """\
x: !uniform [0.0, 1.0]
steps: 8
"""


def make_search_project(root: Path, space: str = SPACE) -> Path:
    """A project whose task `train` runs the script above, with ``space`` as search.yml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(SEARCH_SCRIPT)
    (root / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('train.py')\n")
    (root / "search.yml").write_text(textwrap.dedent(space))
    return root


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\\nState:\\tZ" not in status
