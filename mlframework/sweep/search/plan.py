"""What a search is, without Optuna: its settings (sampler, budget, pruning) and its plan (space and settings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mlframework.exceptions import ConfigError
from mlframework.sweep.params.space import SearchSpace

SAMPLERS = ("random", "tpe", "cmaes", "grid", "qmc", "bohb")
PRUNERS = ("median", "hyperband", "asha", "none")


def default_sampler(objectives: Sequence[object], prune: str = "none") -> str:
    """The sampler of a search that names no ``--search`` (``--trials N`` alone asks for one).

    ``bohb`` for one metric: it learns from the steps a trial reports when a ``--prune`` pruner collects them,
    and from final values alone it is a TPE-like model whose draws reach the box's bounds. With several
    objectives (``objectives``: two or more), ``bohb`` when multi-objective ASHA prunes (``prune``: asha), whose
    rung values it models; ``tpe`` (MOTPE) when nothing is pruned, where it measured better on LCBench
    (bench/README.md, "Several objectives").
    """
    if len(objectives) > 1:
        return "bohb" if prune == "asha" else "tpe"
    return "bohb"


@dataclass
class SearchSettings:
    """How a sweep searches: sampler, budget, pruning (recorded in sweep.json)."""

    sampler: str = "tpe"
    trials: int = 20
    seed: int | None = None
    timeout_s: float | None = None  # no new trial is asked once this long has passed since the sweep began
    prune: str = "none"
    prune_metric: str | None = None  # default: the sweep's metric
    grace_s: float = 10.0  # SIGTERM to SIGKILL of a pruned trial
    parallel: int | None = None  # trials in flight; None: one per worker slot found

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--search {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.prune not in PRUNERS:
            raise ConfigError(f"--prune {self.prune!r}: choose one of {', '.join(PRUNERS)}")
        if self.trials < 1:
            raise ConfigError("--trials must be at least 1")

    def describe(self) -> str:
        """The search in words, as the summary names it: ``a bohb search, pruned by hyperband``."""
        pruned = f", pruned by {self.prune}" if self.prune != "none" else ", no pruning"
        return f"a {self.sampler} search{pruned}"

    def to_meta(self) -> dict[str, Any]:
        """The settings as sweep.json keeps them."""
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SearchSettings:
        """The settings sweep.json recorded."""
        known = {key: meta[key] for key in cls.__dataclass_fields__ if key in meta}
        return cls(**known)


@dataclass
class SearchPlan:
    """A search: the space it samples (an Optuna study, :mod:`mlframework.sweep.search.study`) and how."""

    space: SearchSpace
    settings: SearchSettings
