"""Metric names: one normal form for how people spell a metric, and which names read as metrics or steps.

``--metric "val loss"``, ``val_loss``, ``Val-Loss`` and ``eval_loss`` are one
metric: :func:`metric_key` gives them the same normal form (lower case, words
joined by ``_``, a leading ``eval``/``valid``/``validation`` read as ``val``).
The output reader records a metric the sweep asked for under the name as the
user typed it; ranking, ``show`` and the pruner find a metric by its normal form
(:func:`find_metric`, :func:`metric_value`), so a ``metrics.log(val_loss=...)``
script and a script printing ``val loss 2.15`` rank the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Printed keys that say where in training a line is: the record's step, never a metric.
STEP_KEYS = frozenset({"step", "epoch", "iter", "iteration", "global_step"})
_HELD_OUT = ("val", "test", "dev")  # first words of a metric measured on data not trained on
_VAL_ALIASES = frozenset({"eval", "evaluation", "valid", "validation"})
#: Words that make a name read as a metric (each a whole word of the name, digits or ``@k`` may follow).
METRIC_WORDS = (
    "loss|acc|accuracy|error|err|f1|auc|score|perplexity|ppl|bleu|rouge|rouge1|rouge2|rougel|mse|mae|rmse|"
    "precision|recall|iou|miou|dice|reward|return|nll|wer|cer|map|top1|top5|psnr|ssim|fid|r2|mrr|ndcg"
)
_METRIC_WORD = re.compile(rf"(?:^|[\s_./-])(?:{METRIC_WORDS})(?:@?\d+)?(?=$|[\s_./-])", re.IGNORECASE)
_WORDS = re.compile(r"[\s_-]+")


@functools.lru_cache(maxsize=4096)  # called for every value read from output: the same few names
def metric_key(name: str) -> str:
    """The normal form of a metric name: ``"Val loss"``, ``val_loss``, ``val-loss``, ``eval_loss`` -> ``val_loss``."""
    words = [word for word in _WORDS.split(name.strip().lower()) if word]
    if len(words) > 1 and words[0] in _VAL_ALIASES:
        words[0] = "val"
    return "_".join(words)


def name_pattern(name: str) -> str:
    """A regular expression (to compile case-insensitively) for ``name`` as it may be printed.

    ``val loss`` matches ``val loss``, ``val_loss``, ``Val-Loss``, ``eval_loss``, ``validation loss``.
    """
    words = [word for word in _WORDS.split(name.strip().lower()) if word]
    if not words:
        return "(?!)"
    parts = [re.escape(word) for word in words]
    if len(words) > 1 and (words[0] in _VAL_ALIASES or words[0] == "val"):
        parts[0] = "(?:val|valid|validation|eval|evaluation)"
    return r"[ \t_-]+".join(parts)


def is_step(name: str) -> bool:
    """Whether a printed key is a step (``step``, ``epoch``, ``iter``, ``iteration``, ``global_step``), not a metric."""
    return metric_key(name) in STEP_KEYS


@functools.lru_cache(maxsize=4096)
def looks_like_metric(name: str) -> bool:
    """Whether ``name`` has a word that metrics have (loss, acc, f1, perplexity, ...)."""
    return _METRIC_WORD.search(name) is not None


def is_held_out(name: str) -> bool:
    """Whether ``name`` says it is measured on validation or test data (``val loss``, ``eval_acc``, ``test_f1``)."""
    return metric_key(name).split("_")[0] in _HELD_OUT


def find_metric(names: Iterable[str], wanted: str) -> str | None:
    """The name among ``names`` that is ``wanted``: the same spelling, else the same normal form; None if none."""
    key, found = metric_key(wanted), None
    for name in names:
        if name == wanted:
            return name
        if found is None and metric_key(name) == key:
            found = name
    return found


def metric_value(values: Mapping[str, Any] | None, wanted: str | None) -> Any:
    """The value of metric ``wanted`` in ``values`` (a record's metrics), found by its normal form; None if absent."""
    if not values or wanted is None:
        return None
    if wanted in values:
        return values[wanted]
    name = find_metric(values, wanted)
    return values[name] if name is not None else None
