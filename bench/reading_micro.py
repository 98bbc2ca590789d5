"""What reading printed metrics costs a trial, in one process: the reader, then the records' way to the driver.

The output of ``bench/projects/trivial/print_lines.py --lines N`` (the ``output.embedded.extract``
row's trial: every line ``step i: loss=0.i``) is read through the runner once, to get its lines
in the groups a worker's reader gets them. Then, each part timed on its own (best of ``--repeat``):

* ``reader_ms``: a fresh :class:`~mlframework.sweep.trials.scalars.ScalarReader` fed every group,
  its settled records taken every 20 groups (about the 0.2 s a worker's MetricsTail waits);
* ``worker_encode_ms``: the records handed on live and the record's history, JSON-encoded as
  kombu encodes an event and base64-encoded as the embedded broker stores a message;
* ``driver_decode_ms``: the same decoded as the driver decodes them, and the history written as
  one ``trials.jsonl`` line.

``python -m bench.reading_micro [--lines 200000] [--repeat 5]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kombu.utils import json as kombu_json

from mlframework.sweep.trials.runner import run_command
from mlframework.sweep.trials.scalars import ScalarReader

SCRIPT = Path(__file__).resolve().parent / "projects" / "trivial" / "print_lines.py"
TAKEN_EVERY = 20  # groups between two takes of the settled records


def printed_groups(lines: int) -> list[list[str]]:
    """The script's output, in the groups of lines the runner hands a reader."""
    groups: list[list[str]] = []
    run_command(
        [sys.executable, str(SCRIPT), "--lines", str(lines)],
        env={"PYTHONUNBUFFERED": "1"},
        on_lines=lambda stream, group: groups.append(group),
    )
    return groups


def read(groups: list[list[str]]) -> tuple[ScalarReader, list[dict[str, Any]]]:
    """The reader of a live trial fed ``groups``, and the records it handed on."""
    reader = ScalarReader(None, exclude={"lines": 0, "sink": "", "trial": ""})
    reader.live = True
    taken: list[dict[str, Any]] = []
    for number, group in enumerate(groups):
        reader.feed(group)
        if number % TAKEN_EVERY == 0:
            taken += reader.take_settled(quiet=0.0)
    reader.close()
    taken += reader.take_settled(quiet=0.0)
    return reader, taken


def best_ms(action: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``action``, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def run(lines: int, repeat: int) -> dict[str, Any]:
    """The figures of one trial of ``lines`` printed metric lines."""
    groups = printed_groups(lines)
    reader, taken = read(groups)
    events = [
        {"type": "metrics", "trial": "t", "index": 0, "attempt": 1, "host": "h", "history": taken},
        {"type": "finished", "trial": "t", "metrics": reader.final, "history": reader.history},
    ]
    bodies = [base64.b64encode(kombu_json.dumps(event).encode()) for event in events]

    def encode() -> None:
        for event in events:
            base64.b64encode(kombu_json.dumps(event).encode())

    def decode() -> None:
        for body in bodies:
            kombu_json.loads(base64.b64decode(body))
        json.dumps(events[1])

    return {
        "lines": lines,
        "groups": len(groups),
        "records_live": len(taken),
        "records_history": len(reader.history),
        "reader_ms": round(best_ms(lambda: read(groups), repeat), 2),
        "worker_encode_ms": round(best_ms(encode, repeat), 2),
        "driver_decode_ms": round(best_ms(decode, repeat), 2),
    }


def main() -> None:
    """``python -m bench.reading_micro [--lines N] [--repeat K]``: one JSON line of :func:`run`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    print(json.dumps(run(options.lines, options.repeat)))


if __name__ == "__main__":
    main()
