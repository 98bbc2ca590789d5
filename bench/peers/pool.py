"""The floor: ``concurrent.futures.ProcessPoolExecutor(2)``, chunksize 1, no framework at all.

    pool.py trivial --trials 2000 --runs 3
    pool.py spawn   --trials 200  --runs 3        # python -c 'print(1)' per trial, output captured
    pool.py sleep   --durations 0.5,1.2,... --runs 3

The pool is started and warm before the clock starts (as every system's
workers are); each run maps the trials over it in order.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def trivial(i: int) -> int:
    return i


def spawn(i: int) -> int:
    done = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True)
    return len(done.stdout)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["trivial", "spawn", "sleep"])
    parser.add_argument("--trials", type=int, default=0)
    parser.add_argument("--durations", default="")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    function = {"trivial": trivial, "spawn": spawn, "sleep": sleep}[args.mode]
    items = [float(d) for d in args.durations.split(",")] if args.mode == "sleep" else list(range(args.trials))
    walls = []
    with ProcessPoolExecutor(args.slots) as pool:
        list(pool.map(trivial, range(args.slots * 4)))  # fork the workers before timing
        for _ in range(args.runs):
            started = time.perf_counter()
            results = list(pool.map(function, items, chunksize=1))
            walls.append(time.perf_counter() - started)
            assert len(results) == len(items)
    print(json.dumps({"walls": walls, "trials": len(items)}))


if __name__ == "__main__":
    main()
