"""Run the `echo` task on the cluster and stream the workers' output back.

    scripts/run_tasks.sh test_echo          # on the cluster made by infrainit
    python test_echo.py --local             # on this machine, no server

Extra arguments go to `mlframework sweep` (e.g. --results DIR).
"""

import sys
from pathlib import Path

from mlframework.cli import main

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.exit(main(["sweep", str(HERE), "--task", "echo", "-p", str(HERE / "echo.yml"), "--show-output", *sys.argv[1:]]))
