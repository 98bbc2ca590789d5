"""The search scenario's figures from trial records (ours' trials.jsonl, the peers' JSON): one run at a time.

A run is ``{"started": wall-clock s, "driver_cpu_s": s, "trials": [record, ...]}``;
a record has ``status``, ``finished_at`` and ``history`` (``time``, ``step``,
``values.val_accuracy``, ``values.sim_time``), as ours writes it.

* GPU hours to match: walk every report of every trial in wall-clock order,
  summing each trial's simulated time reported so far; the sum at the first
  report with ``val_accuracy >= grid best - TOLERANCE`` is the figure, as a
  fraction of the grid's total. A run that never matches counts as infinity
  (so a median over seeds is finite only when most runs match).
* Wall to match: that report's time minus the run's start.
* Pruned: PRUNED trials that ended by then (by the run's end if never matched).
* Wall at equal quality (:func:`equal_quality_ratios`): ours against a peer on
  the same task and seed, to the best value both reached.
* Regret at a fraction f (:data:`FRACTIONS`: 1%, 2%, 5%): the grid's best
  minus the best ``val_accuracy`` reported while the GPU hours spent (walked
  as above) were at most f of the grid's total; a run that ended before
  spending f counts with its final best (bench/search_sim.py computes the same
  in simulated time).
* Pruning latency: for each PRUNED trial, ``finished_at`` (ours: the worker's
  record of the trial's end, after its process exited; Optuna: the objective
  returned; Ray: the driver's on_trial_complete) minus the time of its last
  report (stamped in the training process when it called metrics.log).
"""

from __future__ import annotations

import math
from typing import Any

from mlframework.statuses import PRUNED

TOLERANCE = 0.1  # percentage points of val_accuracy
FRACTIONS = (0.01, 0.02, 0.05)  # of the grid's GPU hours, for the regret


def summarize(run: dict[str, Any], best: float, grid_hours: float) -> dict[str, Any]:
    events = sorted(
        (entry["time"], i, entry["values"]["sim_time"], entry["values"]["val_accuracy"])
        for i, trial in enumerate(run["trials"])
        for entry in trial.get("history", [])
        if "val_accuracy" in entry.get("values", {})
    )
    spent: dict[int, float] = {}
    matched_at = None
    hours = math.inf
    found = -math.inf
    regret = {f: math.nan for f in FRACTIONS}
    for when, trial, sim_time, value in events:
        spent[trial] = max(spent.get(trial, 0.0), sim_time)
        total = sum(spent.values()) / 3600
        for f in FRACTIONS:
            if math.isnan(regret[f]) and total > f * grid_hours:
                regret[f] = best - found
        found = max(found, value)
        if matched_at is None and value >= best - TOLERANCE:
            matched_at = when
            hours = total
    for f in FRACTIONS:
        if math.isnan(regret[f]):
            regret[f] = best - found
    cutoff = matched_at if matched_at is not None else math.inf
    latencies = [
        trial["finished_at"] - trial["history"][-1]["time"]
        for trial in run["trials"]
        if trial.get("status") == PRUNED and trial.get("history")
    ]
    return {
        "fraction": hours / grid_hours,
        "wall_to_match": (matched_at - run["started"]) if matched_at is not None else math.inf,
        "pruned": sum(1 for t in run["trials"] if t.get("status") == PRUNED and t["finished_at"] <= cutoff),
        "cpu_per_trial_ms": 1000 * run.get("driver_cpu_s", math.nan) / max(len(run["trials"]), 1),
        "latencies": latencies,
        "matched": matched_at is not None,
        "regret": regret,
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _reports(run: dict[str, Any]) -> list[tuple[float, float]]:
    """(wall-clock time, val_accuracy) of every report of the run, in time order."""
    return sorted(
        (entry["time"], entry["values"]["val_accuracy"])
        for trial in run["trials"]
        for entry in trial.get("history", [])
        if "val_accuracy" in entry.get("values", {})
    )


def equal_quality_ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[float]:
    """Per task and seed that both ran: our wall time to the quality both reached over theirs.

    The quality both reached is the lower of the two runs' best ``val_accuracy``;
    each run's time to it is from the run's start to its first report at least
    that good. Defined where "time to the grid's best" is not: when one of the
    two (or both) never came within the tolerance of the grid's best.
    """
    pairs = {(r["task"], r["seed"]): r for r in theirs}
    ratios = []
    for run in ours:
        other = pairs.get((run["task"], run["seed"]))
        if other is None:
            continue
        mine, its = _reports(run), _reports(other)
        if not mine or not its:
            continue
        both = min(max(v for _, v in mine), max(v for _, v in its))
        mine_at = next(t for t, v in mine if v >= both) - run["started"]
        its_at = next(t for t, v in its if v >= both) - other["started"]
        ratios.append(mine_at / its_at if its_at > 0 else math.inf)
    return ratios
