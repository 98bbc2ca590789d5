"""Run the `train` task for every combination of parameters.yml and record the results.

    scripts/run_tasks.sh run_training       # on the cluster made by infrainit
    python run_training.py --local          # on this machine, no server

Extra arguments go to `mlframework sweep` (e.g. --results DIR, --metric accuracy).
"""

import sys
from pathlib import Path

from mlframework.cli import main

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.exit(main(["sweep", str(HERE), "--task", "train", "-p", str(HERE / "parameters.yml"), *sys.argv[1:]]))
