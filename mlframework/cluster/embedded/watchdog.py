"""Embedded mode's watchdog: when the driver dies, however it dies, nothing of its sweep is left.

``python -m mlframework.cluster.embedded.watchdog TAG RUN_DIR`` is started by
:class:`~mlframework.cluster.embedded.workers.EmbeddedCluster` in a session of its own (a
closed terminal's SIGHUP and a Ctrl-C do not reach it), with a pipe from the
driver as its standard input. The driver writes ``sweep PATH`` lines (the
sweep.json to mark) and ``done`` when it stopped everything itself. End of
input without ``done`` means the driver is gone (SIGKILL, a crash, a second
Ctrl-C during its clean-up). The kernel has then already stopped (SIGSTOP) the
local workers, which keeps their pool processes, and so whatever their trials
left, where they can be found. The watchdog

1. SIGKILLs the local workers' process groups (``worker PGID`` lines), so that
   no trial starts after the driver died;
2. stops every process carrying the cluster's tag (trials and whatever they
   started, see :mod:`mlframework.system.proctree`): SIGTERM, SIGKILL after a grace;
3. marks each running sweep.json ``interrupted``, naming the dead driver;
4. removes the temporary run directory (the broker's message files).

Standard library (and two small modules of ours) only: it must start fast and never fail to import.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from mlframework.envvars import CLUSTER as CLUSTER_ENV  # tag of every process of one embedded cluster
from mlframework.sweep.trials import runner
from mlframework.system import proctree
from mlframework.system.fileio import write_text_atomic

GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL of the trials


def mark_interrupted(sweep_json: Path, reason: str) -> bool:
    """Set a running sweep's status to ``interrupted`` (atomically); False when it was not running."""
    try:
        meta = json.loads(sweep_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("status") != "running":
        return False
    meta.update(
        status="interrupted",
        interrupted_reason=reason,
        finished_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    write_text_atomic(sweep_json, json.dumps(meta, indent=2) + "\n")
    return True


def clean_up(tag: str, worker_groups: list[int], run_dir: Path | None, sweeps: list[Path], reason: str) -> None:
    """Everything the dead driver would have done on its way out."""
    held = proctree.freeze(CLUSTER_ENV, tag, whole=True)  # workers and trials held still (SIGSTOP) first
    for group in worker_groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    proctree.kill_tagged(CLUSTER_ENV, tag, GRACE_SECONDS, also=held.untagged)
    runner.remove_stale_scratch()  # the metrics scratch directories of the killed pool processes
    for sweep_json in sweeps:
        mark_interrupted(sweep_json, reason)
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Watch standard input until the driver says ``done`` or goes away."""
    tag, run_dir = argv[0], (Path(argv[1]) if len(argv) > 1 and argv[1] else None)
    for number in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        # The driver's terminal and its process group's signals are not for the watchdog.
        signal.signal(number, signal.SIG_IGN)
    driver = os.getppid()
    groups: list[int] = []
    sweeps: list[Path] = []
    for line in sys.stdin:
        word, _, rest = line.rstrip("\n").partition(" ")
        if word == "done":
            return 0
        if word == "worker" and rest.isdigit():
            groups.append(int(rest))
        elif word == "sweep" and rest:
            sweeps.append(Path(rest))
    clean_up(tag, groups, run_dir, sweeps, f"its driver (pid {driver}) died before the sweep ended")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
