"""A sweep's objectives and constraints: ``--metric accuracy:max --metric latency_ms:min``, ``--constraint "mem<8000"``.

An :class:`Objective` is a metric and its direction (``max`` or ``min``; guessed
from the name when not given, as for one metric: :func:`~mlframework.sweep.records.ranking.guess_mode`).
A :class:`Constraint` is a bound on a metric; a trial that breaks one (or did not
report its metric) is *infeasible*: never the best trial, never on the Pareto front.
Metrics are found in any spelling (:mod:`~mlframework.sweep.trials.metric_names`).
Pure: no I/O.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlframework.exceptions import ConfigError
from mlframework.sweep.records.ranking import guess_mode
from mlframework.sweep.trials.metric_names import metric_value

MODES = ("max", "min")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_CONSTRAINT = re.compile(r"^\s*(?P<name>.+?)\s*(?P<op><=|>=|<|>)\s*(?P<bound>[^<>=]+?)\s*$")


def number(value: Any) -> float | None:
    """``value`` as a finite float; None for a missing, non-numeric, boolean, NaN or infinite value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Objective:
    """One metric a sweep optimises, and whether larger (``max``) or smaller (``min``) is better."""

    name: str
    mode: str

    def __str__(self) -> str:
        return f"{self.name}:{self.mode}"

    def value(self, metrics: Mapping[str, Any] | None) -> float | None:
        """The objective's value in a record's metrics (any spelling); None when missing or not a finite number."""
        return number(metric_value(metrics, self.name))


@dataclass(frozen=True)
class Constraint:
    """A bound a trial's metric must keep: ``name op bound`` (``op`` one of ``<``, ``<=``, ``>``, ``>=``)."""

    name: str
    op: str
    bound: float

    def __str__(self) -> str:
        bound = str(int(self.bound)) if self.bound.is_integer() else repr(self.bound)
        return f"{self.name}{self.op}{bound}"

    def value(self, metrics: Mapping[str, Any] | None) -> float | None:
        """The constrained metric's value in a record's metrics; None when missing."""
        return number(metric_value(metrics, self.name))

    def holds(self, metrics: Mapping[str, Any] | None) -> bool:
        """Whether the metrics keep the bound (a missing metric breaks it)."""
        value = self.value(metrics)
        return value is not None and _OPERATORS[self.op](value, self.bound)

    def violation(self, metrics: Mapping[str, Any] | None) -> float:
        """Optuna's convention: <= 0 when the bound holds, the amount it is broken by otherwise (1 when missing)."""
        value = self.value(metrics)
        if value is None:
            return 1.0
        if self.holds(metrics):
            return min(0.0, self.bound - value if self.op in ("<", "<=") else value - self.bound)
        return max(abs(value - self.bound), 1e-12)


def parse_objective(text: str, mode: str | None = None) -> Objective:
    """``NAME``, ``NAME:max`` or ``NAME:min`` as an objective (``mode``, e.g. ``--mode``, when NAME has none)."""
    name, given = text.strip(), None
    for suffix in MODES:
        if name.endswith(f":{suffix}"):
            name, given = name[: -len(suffix) - 1].strip(), suffix
    if not name:
        raise ConfigError(f"--metric {text!r}: give a metric name, e.g. --metric accuracy:max")
    if given is not None and mode is not None and given != mode:
        raise ConfigError(f"--metric {text} and --mode {mode} disagree: give the direction once")
    return Objective(name, given or mode or guess_mode(name))


def parse_objectives(texts: Sequence[str], mode: str | None = None) -> tuple[Objective, ...]:
    """Every ``--metric`` given; ``--mode`` applies to one metric only, each of several says its own direction."""
    if len(texts) > 1 and mode is not None:
        raise ConfigError("--mode applies to one --metric: give each of several its direction, e.g. --metric loss:min")
    objectives = tuple(parse_objective(text, mode) for text in texts)
    names = [objective.name for objective in objectives]
    if len(set(names)) != len(names):
        raise ConfigError(f"--metric {', '.join(names)}: each metric once")
    return objectives


def parse_constraint(text: str) -> Constraint:
    """``NAME<VALUE`` (also ``<=``, ``>``, ``>=``) as a constraint; one line (ConfigError) when it is not one."""
    match = _CONSTRAINT.match(text)
    bound = number(_float(match.group("bound"))) if match else None
    if match is None or bound is None or not match.group("name").strip():
        raise ConfigError(f"--constraint {text!r}: write NAME<VALUE (or <=, >, >=), e.g. --constraint 'memory_mb<8000'")
    return Constraint(match.group("name").strip(), match.group("op"), bound)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def feasible(metrics: Mapping[str, Any] | None, constraints: Sequence[Constraint]) -> bool:
    """Whether a record's metrics keep every constraint."""
    return all(constraint.holds(metrics) for constraint in constraints)


def objectives_to_meta(objectives: Sequence[Objective]) -> list[dict[str, str]]:
    """The objectives as sweep.json keeps them."""
    return [{"name": objective.name, "mode": objective.mode} for objective in objectives]


def objectives_from_meta(meta: Mapping[str, Any]) -> tuple[Objective, ...]:
    """The objectives a sweep.json recorded (none for a single-metric sweep)."""
    recorded = meta.get("objectives")
    if not isinstance(recorded, list):
        return ()
    return tuple(
        Objective(str(entry["name"]), str(entry["mode"]))
        for entry in recorded
        if isinstance(entry, dict) and entry.get("mode") in MODES and entry.get("name")
    )


def constraints_from_meta(meta: Mapping[str, Any]) -> tuple[Constraint, ...]:
    """The constraints a sweep.json recorded (as typed: ``["memory_mb<8000"]``)."""
    recorded = meta.get("constraints")
    return tuple(parse_constraint(str(text)) for text in recorded) if isinstance(recorded, list) else ()
