"""What the LCBench peers share: the search space from config_space.json, one simulated trial, the records.

A trial record is what ours writes to trials.jsonl, reduced to what
bench/search_figures.py reads: ``status`` (SUCCESS or PRUNED),
``started_at``, ``finished_at`` (wall-clock seconds) and ``history``, one
``{"time", "step", "values": {"val_accuracy", "sim_time"}}`` per epoch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for bench.lcbench

from bench.lcbench import EPOCHS, HYPERPARAMETERS, Surrogate, config_space
from mlframework.statuses import PRUNED, SUCCESS

_SURROGATE: Surrogate | None = None


def surrogate() -> Surrogate:
    """One surrogate per process (a Ray actor, the Optuna driver)."""
    global _SURROGATE
    if _SURROGATE is None:
        _SURROGATE = Surrogate()
    return _SURROGATE


def space() -> dict[str, dict[str, Any]]:
    """The seven hyperparameters: ``{name: {"type": "int"|"float", "low", "high", "log"}}``."""
    raw = config_space()
    return {
        name: {
            "type": "int" if raw[name]["type"] == "uniform_int" else "float",
            "low": raw[name]["lower"],
            "high": raw[name]["upper"],
            "log": bool(raw[name]["log"]),
        }
        for name in HYPERPARAMETERS
    }


def run_trial(
    task: str, config: dict[str, float], scale: float, report: Callable[[int, float, float], bool]
) -> dict[str, Any]:
    """52 epochs as train.py runs them (query, sleep the scaled epoch, report); ``report`` True stops it."""
    record: dict[str, Any] = {"params": config, "started_at": time.time(), "history": [], "status": SUCCESS}
    spent = 0.0
    try:
        for epoch in range(1, EPOCHS + 1):
            result = surrogate().query(task, config, [epoch])[0]
            time.sleep(max(result["time"] - spent, 0.0) / scale)
            spent = max(spent, result["time"])
            record["history"].append(
                {
                    "time": time.time(),
                    "step": epoch,
                    "values": {"val_accuracy": result["val_accuracy"], "sim_time": spent},
                }
            )
            if report(epoch, result["val_accuracy"], spent):
                record["status"] = PRUNED
                break
    finally:
        record["finished_at"] = time.time()
    return record
