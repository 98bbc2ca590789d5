"""Ranking trials by a metric: which metric and direction, guessed when not given, and the order best first."""

from __future__ import annotations

from collections.abc import Sequence

from mlframework.statuses import SUCCESS
from mlframework.sweep.records.record import TrialRecord

_LOWER_IS_BETTER = ("loss", "error", "err", "mse", "rmse", "mae", "perplexity", "time")


def guess_mode(metric: str) -> str:
    """``min`` for names that read like a loss or an error, else ``max``."""
    lowered = metric.lower()
    return "min" if any(word in lowered for word in _LOWER_IS_BETTER) else "max"


def pick_metric(records: Sequence[TrialRecord], metric: str | None, mode: str | None) -> tuple[str | None, str | None]:
    """The metric and mode to rank by: as given, else the first metric any trial reported."""
    if metric is None:
        for record in sorted(records, key=lambda r: r.get("index", 0)):
            names = list(record.get("metrics") or {})
            if names:
                preferred = [n for n in names if "acc" in n.lower()] or names
                metric = preferred[0]
                break
    if metric is not None and mode is None:
        mode = guess_mode(metric)
    return metric, mode


def rank(records: Sequence[TrialRecord], metric: str | None, mode: str | None) -> list[TrialRecord]:
    """Sort records best first by ``metric``; successful trials with the metric come first."""

    def key(record: TrialRecord) -> tuple[int, float, int]:
        value = (record.get("metrics") or {}).get(metric) if metric else None
        usable = record.get("status") == SUCCESS and isinstance(value, (int, float)) and value == value
        if not usable:
            return (1, 0.0, record.get("index", 0))
        number = float(value)  # type: ignore[arg-type]  # usable: an int or a float
        return (0, -number if mode == "max" else number, record.get("index", 0))

    return sorted(records, key=key)
