"""Small throwaway projects for tests (a tasks.py, a training script and a grid), and sweeps run on them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

TRAIN_SCRIPT = """
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
"""


# Short trials (so they go several to a message); the one whose x is ``crash`` kills its pool process.
CRASH_IN_BATCH = """
    @mlf.task
    def crash_at(trial):
        import os, signal
        if trial.params["x"] == trial.params["crash"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"score": trial.params["x"]}
"""


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


def start_sweep(cwd: Path, *args: str, broker_url: str | None = None) -> subprocess.Popen[str]:
    """``mlframework sweep ARGS`` as a background process (output captured), e.g. to kill it mid-sweep."""
    env = {**os.environ, "COLUMNS": "200"}
    if broker_url:
        env["MLFRAMEWORK_BROKER_URL"] = broker_url
    return subprocess.Popen(
        [sys.executable, "-m", "mlframework", "sweep", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_for_records(results: Path, count: int, timeout: float = 90) -> Path:
    """The sweep directory under ``results`` once its trials.jsonl holds ``count`` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for trials in results.glob("*/trials.jsonl"):
            if len(trials.read_text().splitlines()) >= count:
                return trials.parent
        time.sleep(0.1)
    raise AssertionError(f"no sweep under {results} recorded {count} trial(s) within {timeout:g}s")
