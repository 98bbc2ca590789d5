"""Run the `echo` task (echo.yml: 4 short trials) and stream the workers' output back.

    scripts/run_tasks.sh test_echo          # on the cluster made by infrainit
    python test_echo.py --local             # on this machine, no server

Extra arguments go to `mlframework sweep` (e.g. --results DIR).
"""

from mlframework.cli.entry import test_echo

if __name__ == "__main__":
    test_echo(__file__)
