"""5. Big grids: time to the first trial sent and the driver's peak memory, for 10^6 and 10^9 points.

Each run is a fresh driver process (``python -m bench.scenarios.biggrid``)
running ``run_sweep`` against an embedded broker with no workers, with a
window of ``--limit`` trials. Until a trial has finished the driver sends
only a few trials one per message (``Pacing.PROBE_AHEAD`` in sweep/driver/dispatch.py); it sends
those and then waits for results that never come, which is where it is
stopped (from SweepObserver.idle()).
``Celery.send_task`` is wrapped in that process to note when the first
message has been handed to the broker. Peak memory is the process's
VmHWM, imports included; that 10^9 costs what 10^6 does shows that
nothing is expanded.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.context import PROJECT, REPO, Context
from bench.figures import Figure, Target

LIMIT = 1000  # trials the driver may send before results come back (run_sweep's window)


def _grid(exponent: int) -> dict[str, range]:
    """``exponent`` // 3 parameters of 1,000 values (and one of the rest): 10^exponent points."""
    grid = {f"p{i}": range(1000) for i in range(exponent // 3)}
    if exponent % 3:
        grid["q"] = range(10 ** (exponent % 3))
    return grid


def _one(exponent: int, workdir: Path) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scenarios.biggrid",
            "--exponent",
            str(exponent),
            "--limit",
            str(LIMIT),
            "--workdir",
            str(workdir),
            "--spawned-at",
            repr(time.time()),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"driver exited with {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    figures: list[Figure] = []
    for exponent in (6, 9):
        note = f"10^{exponent} points, window {LIMIT}"
        wanted = [
            Figure("biggrid", f"first-send-1e{exponent}", "ours: run_sweep() call to first trial sent", "s", note=note),
            Figure(
                "biggrid",
                f"memory-1e{exponent}",
                "ours: driver peak RSS, imports included",
                "MB",
                note=f"{note}, {_expected_sent(LIMIT)} sent",
            ),
            Figure(
                "biggrid",
                f"startup-1e{exponent}",
                "ours: process start to first trial sent",
                "s",
                note=f"{note}, interpreter start and imports included",
            ),
        ]
        wanted = [figure for figure in wanted if ctx.wanted(figure.key)]
        if not wanted:
            continue
        ctx.quiet_machine()
        try:  # one driver process per run gives all three figures
            samples = [_one(exponent, ctx.workdir) for _ in range(ctx.runs)]
        except Exception as exc:
            for figure in wanted:
                figure.unavailable = f"failed: {exc}"
        else:
            fields = {"first-send": "first_send_s", "memory": "maxrss_mb", "startup": "from_spawn_s"}
            for figure in wanted:
                figure.values = [sample[fields[figure.system.rsplit("-", 1)[0]]] for sample in samples]
        figures.extend(wanted)
    targets = [
        Target("biggrid.first-send-1e6", None, "<=", 1.0, "< 1 s"),
        Target("biggrid.memory-1e6", None, "<=", 150.0, "< 150 MB"),
    ]
    return figures, targets


# --------------------------------------------------------------------------- the driver process


class _Stop(Exception):
    pass


def _expected_sent(limit: int) -> int:
    from mlframework.sweep.driver.dispatch import Pacing

    return min(limit, Pacing.PROBE_AHEAD)


def _driver(exponent: int, limit: int, workdir: Path, spawned_at: float) -> dict[str, float]:
    import celery

    from mlframework.cluster.embedded.workers import EmbeddedCluster
    from mlframework.sweep.driver.run import run_sweep
    from mlframework.sweep.driver.spec import SweepObserver, SweepSpec
    from mlframework.sweep.params.grid_file import grid_from_mapping

    marks: dict[str, float] = {}
    original = celery.Celery.send_task

    def send_task(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        marks.setdefault("first", time.perf_counter())
        marks["count"] = marks.get("count", 0) + 1
        return result

    celery.Celery.send_task = send_task  # type: ignore[method-assign]

    class StopWhenWaiting(SweepObserver):
        def idle(self) -> None:  # the window is full: the driver now only waits
            raise _Stop

    run_dir = Path(tempfile.mkdtemp(prefix="biggrid-", dir=workdir))
    embedded = EmbeddedCluster(PROJECT, workers=1, run_dir=run_dir)  # never started: no workers
    for folder in ("broker/queue", "broker/control"):
        (run_dir / folder).mkdir(parents=True)
    grid = grid_from_mapping(_grid(exponent))
    assert grid.count == 10**exponent
    spec = SweepSpec(PROJECT, grid, task="noop", results_root=run_dir / "results")
    started = time.perf_counter()
    wall_started = time.time()
    try:
        run_sweep(spec, embedded.broker, StopWhenWaiting(), window=limit)
    except _Stop:
        pass
    sent = len(list((run_dir / "broker" / "queue").iterdir()))
    expected = _expected_sent(limit)
    if marks.get("count") != expected or sent < expected:
        raise SystemExit(f"expected {expected} trials sent, send_task called {marks.get('count')} times, {sent} files")
    return {
        "first_send_s": marks["first"] - started,
        "from_spawn_s": (wall_started - spawned_at) + (marks["first"] - started),
        "maxrss_mb": _peak_rss_mb(),
        "sent": sent,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM): unlike ru_maxrss, not inherited from the parent across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--exponent", type=int, required=True)
    parser.add_argument("--limit", type=int, default=LIMIT)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--spawned-at", type=float, required=True)
    arguments = parser.parse_args()
    print(json.dumps(_driver(arguments.exponent, arguments.limit, arguments.workdir, arguments.spawned_at)))
