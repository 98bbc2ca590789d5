"""Issue 15: ``mlframework report`` of a 10,000-trial sweep, written in under 10 s.

The sweep directory is written by the real ResultsStore: 10,000 trials of 4 parameters, each
with a 20-step metric history, on 2 hosts x 4 GPUs, 5% failed and 5% pruned. Timed: the whole
command (interpreter start and imports included), HTML alone and with ``--png``.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.context import REPO, Context
from bench.figures import Figure, Target
from mlframework.statuses import FAILURE, PRUNED, SUCCESS

TRIALS = 10_000
STEPS = 20


def make_sweep(root: Path, trials: int = TRIALS, steps: int = STEPS) -> str:
    """A finished sweep ``big`` under ``root`` as the driver would have recorded it."""
    from mlframework.sweep.records.results import ResultsStore

    names = ["lr", "batch", "layers", "optimizer"]
    meta = {
        "id": "big",
        "project": str(root / "proj"),
        "task": "train",
        "parameters_file": str(root / "proj" / "parameters.yml"),
        "parameters": names,
        "trials": trials,
        "status": "finished",
        "created_at": "2026-12-01T10:00:00+00:00",
        "finished_at": "2026-12-01T12:00:00+00:00",
    }
    store = ResultsStore.create(root, meta, names)
    rng = random.Random(0)
    clock = {(h, g): 1_700_000_000.0 for h in ("gpu1", "gpu2") for g in range(4)}
    for index in range(trials):
        params = {
            "lr": 10 ** rng.uniform(-4, -1),
            "batch": rng.choice([32, 64, 128, 256]),
            "layers": rng.randint(1, 8),
            "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
        }
        status = FAILURE if index % 20 == 7 else (PRUNED if index % 20 == 13 else SUCCESS)
        length = steps if status == SUCCESS else rng.randint(1, steps // 2)
        ceiling = 0.99 - abs(params["lr"] - 0.01) * 3 - 0.01 * params["layers"]
        slot = min(clock, key=clock.__getitem__)
        start = clock[slot] + rng.uniform(0, 2)
        history = [
            {"time": start + s, "step": s, "values": {"accuracy": ceiling * (1 - 0.8**s), "loss": 1 / (s + 1)}}
            for s in range(length)
        ]
        clock[slot] = end = start + length + rng.uniform(0, 1)
        store.record(
            {
                "trial": f"t{index:05d}",
                "index": index,
                "status": status,
                "host": slot[0],
                "gpu": str(slot[1]),
                "worker": f"gpu{slot[1]}@{slot[0]}",
                "params": params,
                "duration_s": end - start,
                "started_at": start,
                "finished_at": end,
                "exit_code": 1 if status == FAILURE else 0,
                "metrics": history[-1]["values"] if history else {},
                "history": history,
                "error": "exit code 1" if status == FAILURE else None,
            }
        )
    store.close()
    return "big"


def _time_report(root: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``mlframework report`` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mlframework", "report", "big", "--results", str(root), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1:])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    note = f"{TRIALS:,} trials x {STEPS} steps, 4 parameters, 8 GPU slots; command start to file written"
    wanted = [
        Figure("report", "html-10k", "ours: mlframework report (HTML), wall", "s", note=note),
        Figure("report", "html-10k-cpu", "ours: mlframework report (HTML), CPU user+sys", "s", note=note),
        Figure("report", "html-png-10k", "ours: mlframework report --png (HTML and 5 PNGs), wall", "s", note=note),
    ]
    wanted = [figure for figure in wanted if ctx.wanted(figure.key)]
    if wanted:
        root = ctx.workdir / "report"
        root.mkdir(exist_ok=True)
        try:
            if not (root / "big").exists():
                make_sweep(root)
            html = [_time_report(root) for _ in range(ctx.runs)] if any("png" not in f.system for f in wanted) else []
            for figure in wanted:
                if figure.system == "html-10k":
                    figure.values = [wall for wall, _ in html]
                elif figure.system == "html-10k-cpu":
                    figure.values = [cpu for _, cpu in html]
                else:
                    figure.values = [_time_report(root, "--png", str(root / "png"))[0] for _ in range(ctx.runs)]
        except Exception as exc:
            for figure in wanted:
                figure.unavailable = f"failed: {exc}"
    return wanted, [Target("report.html-10k", None, "<=", 10.0, "< 10 s")]
