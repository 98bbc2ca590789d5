"""Ranking trials by a metric: which metric and direction, guessed when not given, and the order best first.

A metric asked for by name is found in any spelling (``val loss`` is ``val_loss``:
:mod:`~mlframework.sweep.trials.metric_names`). Without one the guess takes a name
that reads as a metric (loss, accuracy, f1, ...; one measured on validation or test
data first, then an accuracy), else one reported as a series over steps, never a
parameter's name or one that reads as configuration (``batch_size``, ``num_layers``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mlframework.statuses import SUCCESS
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.trials.metric_names import find_metric, is_held_out, looks_like_metric, metric_value

_LOWER_IS_BETTER = ("loss", "error", "err", "mse", "rmse", "mae", "perplexity", "ppl", "wer", "cer", "nll", "time")
_CONFIG_WORDS = re.compile(
    r"(?:^|_)(?:size|steps|iters|num|n|layers?|dim|heads|interval|seed|dropout|decay|warmup|batch|workers|"
    r"params|parameters|vocab|block|embd|lr|rate|beta\d?|eps|version|threads|device|gpus?)(?:_|$)"
)


def guess_mode(metric: str) -> str:
    """``min`` for names that read like a loss or an error, else ``max``."""
    lowered = metric.lower()
    return "min" if any(word in lowered for word in _LOWER_IS_BETTER) else "max"


def looks_like_config(name: str) -> bool:
    """Whether ``name`` reads as a setting rather than a result (``gradient_accumulation_steps``, ``n_layer``)."""
    return _CONFIG_WORDS.search("_".join(re.split(r"[\s_./-]+", name.lower()))) is not None


def metrics_seen(records: Sequence[TrialRecord]) -> list[str]:
    """Every metric name the trials reported, in the order first seen (trials in index order)."""
    names: dict[str, None] = {}
    for record in sorted(records, key=lambda r: r.get("index", 0)):
        names.update(dict.fromkeys(record.get("metrics") or {}))
    return list(names)


def _series(records: Sequence[TrialRecord]) -> set[str]:
    """Names some trial reported at two steps or more."""
    counts: dict[str, int] = {}
    for record in records:
        seen: dict[str, int] = {}
        for point in record.get("history") or []:
            values = point.get("values") if isinstance(point, dict) else None
            for name in values if isinstance(values, dict) else ():
                seen[name] = seen.get(name, 0) + 1
        for name, count in seen.items():
            counts[name] = max(counts.get(name, 0), count)
    return {name for name, count in counts.items() if count >= 2}


def guess_metric(records: Sequence[TrialRecord]) -> str | None:
    """The metric to rank by when none was asked for (see the module's docstring); None when none fits."""
    params = {name for record in records for name in (record.get("params") or {})}
    names = [name for name in metrics_seen(records) if name not in params]
    metric_like = [name for name in names if looks_like_metric(name)]
    if metric_like:

        def preference(name: str) -> int:
            accuracy = "acc" in name.lower()
            return 0 if is_held_out(name) and accuracy else 1 if is_held_out(name) else 2 if accuracy else 3

        return min(metric_like, key=preference)  # min keeps the first seen among equals
    series = _series(records)
    plain = [name for name in names if not looks_like_config(name)]
    return next((name for name in plain if name in series), plain[0] if plain else None)


def pick_metric(records: Sequence[TrialRecord], metric: str | None, mode: str | None) -> tuple[str | None, str | None]:
    """The metric and mode to rank by: as given (spelled as the trials reported it), else a guess."""
    if metric is None:
        metric = guess_metric(records)
    else:
        metric = find_metric(metrics_seen(records), metric) or metric
    if metric is not None and mode is None:
        mode = guess_mode(metric)
    return metric, mode


def rank(
    records: Sequence[TrialRecord],
    metric: str | None,
    mode: str | None,
    feasible: Callable[[TrialRecord], bool] | None = None,
) -> list[TrialRecord]:
    """Sort records best first by ``metric``; successful (and ``feasible``: --constraint) trials with it come first."""

    def key(record: TrialRecord) -> tuple[int, float, int]:
        value = metric_value(record.get("metrics"), metric)
        usable = record.get("status") == SUCCESS and isinstance(value, (int, float)) and value == value
        usable = usable and (feasible is None or feasible(record))
        if not usable:
            return (1, 0.0, record.get("index", 0))
        number = float(value)
        return (0, -number if mode == "max" else number, record.get("index", 0))

    return sorted(records, key=key)
