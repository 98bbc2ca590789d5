"""Plain Celery on the bench's RabbitMQ: ``delay()`` / ``get()``, rpc:// results, 2 prefork slots.

What a user would write without a sweep framework, with Celery's defaults
(prefetch multiplier 4, early acknowledgement); run with the framework's venv,
which has Celery:

    celery_plain.py --broker URL --trials 2000 --runs 3

starts its own worker (``celery -A bench.peers.celery_plain worker -c 2``)
on a queue of its own, waits until it answers, times each run of ``trials``
``noop.delay()`` followed by ``get()`` on every result, and stops the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from celery import Celery

QUEUE = "bench.plain"

app = Celery("bench_plain", broker=os.environ.get("BENCH_BROKER_URL", "memory://"), backend="rpc://")
app.conf.update(task_default_queue=QUEUE, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="bench_plain.noop")
def noop(i: int) -> int:
    return i


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    app.conf.broker_url = args.broker
    env = {**os.environ, "BENCH_BROKER_URL": args.broker}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.peers.celery_plain",
            "worker",
            "-c",
            str(args.slots),
            "-P",
            "prefork",
            "-Q",
            QUEUE,
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
        start_new_session=True,
    )
    try:
        for result in [noop.delay(i) for i in range(args.slots * 4)]:
            result.get(timeout=60)  # the worker is up and its pool forked
        walls = []
        for _ in range(args.runs):
            started = time.perf_counter()
            results = [noop.delay(i) for i in range(args.trials)]
            values = [result.get(timeout=120) for result in results]
            walls.append(time.perf_counter() - started)
            assert values == list(range(args.trials))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    print(json.dumps({"walls": walls, "trials": args.trials}))


if __name__ == "__main__":
    main()
