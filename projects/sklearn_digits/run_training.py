"""Run the `train` task for every combination of parameters.yml and record the results.

    scripts/run_tasks.sh run_training       # on the cluster made by infrainit
    python run_training.py --local          # on this machine, no server

Extra arguments go to `mlframework sweep` (e.g. --results DIR, --metric accuracy).
"""

from mlframework.cli.entry import run_training

if __name__ == "__main__":
    run_training(__file__)
