"""How much each parameter matters to the metric: Optuna's fANOVA evaluator on the finished trials.

A study is made in memory from the successful trials (a finished grid works as well as a
search): each varying parameter becomes a float, int or categorical distribution over the
values it took. Above :data:`MAX_TRIALS` trials a seeded sample is used, which keeps the report
of a 10,000-trial sweep within seconds (fANOVA's forest grows with the trials, its ranking barely does).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from mlframework.report.data import ReportData, is_number, label, metric_value

log = logging.getLogger(__name__)

MAX_TRIALS = 500
# Smaller forests than Optuna's default (64 trees, depth 64): the ranking is the same on sweeps like
# these, and the marginal variances cost a few seconds instead of a minute for a big sweep.
N_TREES, MAX_DEPTH = 32, 8


def _distribution(optuna: Any, values: list[Any], numeric: bool) -> Any:
    if numeric:
        low, high = min(values), max(values)
        if all(isinstance(v, int) for v in values):
            return optuna.distributions.IntDistribution(int(low), int(high))
        return optuna.distributions.FloatDistribution(float(low), float(high))
    return optuna.distributions.CategoricalDistribution(list(dict.fromkeys(label(v) for v in values)))


def parameter_importance(data: ReportData, seed: int = 0) -> tuple[dict[str, float], str]:
    """({parameter: importance}, a note on how it was computed or why not); importances sum to 1."""
    metric = data.metric
    scored = data.scored()
    if not metric or not data.parameters:
        return {}, "no metric or no parameter that varies"
    if len(scored) < 2:
        return {}, "fewer than two successful trials with the metric"
    note = f"Optuna fANOVA over {len(scored)} successful trials"
    if len(scored) > MAX_TRIALS:
        scored = random.Random(seed).sample(scored, MAX_TRIALS)
        note = f"Optuna fANOVA over a sample of {MAX_TRIALS} of {len(data.scored())} successful trials"
    try:
        import optuna
    except ImportError:
        return {}, "optuna is not installed (pip install 'mlframework[report]')"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {}
    for parameter in data.parameters:
        values = [(r.get("params") or {}).get(parameter.name) for r in scored]
        if any(v is None for v in values):
            continue  # not in every trial (a conditional search space): left out
        if len({label(v) for v in values}) > 1:
            distributions[parameter.name] = _distribution(optuna, values, parameter.numeric)
    if not distributions:
        return {}, "no parameter varies among the successful trials"
    trials = []
    for record in scored:
        params = record.get("params") or {}
        chosen = {
            name: params[name] if is_number(params[name]) and not _categorical(d) else label(params[name])
            for name, d in distributions.items()
        }
        value = float(metric_value(record, metric))
        trials.append(optuna.trial.create_trial(params=chosen, distributions=distributions, value=value))
    study = optuna.create_study(direction="maximize" if data.mode == "max" else "minimize")
    study.add_trials(trials)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=N_TREES, max_depth=MAX_DEPTH, seed=seed)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ImportError, RuntimeError, ValueError) as exc:  # e.g. scikit-learn missing, degenerate data
        log.info("parameter importance not computed: %s", exc)
        return {}, f"not computed: {exc}"
    return {name: float(value) for name, value in importances.items()}, note


def _categorical(distribution: Any) -> bool:
    return type(distribution).__name__ == "CategoricalDistribution"
