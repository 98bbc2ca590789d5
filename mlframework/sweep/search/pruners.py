"""Pruning decisions in O(log n) each: successive halving (ASHA), hyperband and median over values kept sorted.

Optuna's pruners decide from the whole study at every call: ``SuccessiveHalvingPruner``
reads every trial's rung attributes, ``MedianPruner`` every completed trial's
value at the step, so one decision costs O(trials) (50-107 ms a trial near
10,000 trials, README "Search on LCBench"). These keep, as reports come, each
rung's values (each step's, for the median) in a ``SortedList``: a decision is
a few insertions and one indexed look-up, O(log n).

The decisions are those of the Optuna pruners they replace (property tests in
``tests/unit/test_pruners.py`` compare them on random report sequences):

- :class:`SuccessiveHalving` is ``SuccessiveHalvingPruner(min_resource,
  reduction_factor)``: a trial whose last reported step reaches rung r's step
  ``min_resource * rf ** (rate + r)`` records its value at that rung and goes on
  only if it is in the top 1/rf of the values recorded there (the best value
  while fewer than rf are there); a batch of reports that crosses several
  rungs records the same value at each, as Optuna does.
- :class:`Hyperband` is ``HyperbandPruner(min_resource, max_resource="auto",
  reduction_factor)``: brackets as Optuna assigns them (crc32 of
  ``"{study name}_{trial number}"`` over the brackets' budgets), each bracket a
  successive halving of its own; nothing is decided or recorded until a trial
  has completed (its last step + 1 is the maximum resource). The maximum
  resource is kept once found (:attr:`Hyperband.max_resource`, saved with the
  study), where a new Optuna pruner would estimate it again after a resume.
- :class:`Median` is ``MedianPruner(n_startup_trials, n_warmup_steps)``: after
  the startup trials have completed and past the warm-up steps, a trial whose
  best value so far is worse than the median of the completed trials' values
  at its last step is pruned.

With several objectives, :class:`MultiObjectiveSuccessiveHalving` is the
multi-objective ASHA of Schmucker et al. (2021, "Multi-objective Asynchronous
Successive Halving"): at each rung a trial records its vector of objective
values and goes on only if its non-dominated rank among the vectors recorded
there puts it in the top 1/rf: fewer than ``max(len // rf, 1)`` of them lie on
better fronts (:mod:`~mlframework.sweep.records.pareto`). With one objective this
is exactly :class:`SuccessiveHalving`'s rule (a property test checks it). Where the
paper breaks ties inside the last front admitted (an epsilon-net or NSGA-II's
crowding distance), this promotes that whole front: a rung may let a few more
trials on, never stop one the paper would promote. A rung keeps its vectors in fronts updated
one trial at a time (:class:`~mlframework.sweep.records.pareto.Fronts`), so a
decision is a few dominance checks, not a sort of the rung.

The caller (``sweep/search/study.py``) feeds them: :meth:`reported` for each new
intermediate value, :meth:`decide` after a batch of reports, :meth:`finished`
once a trial is told; ``on_rung`` is called with each rung value recorded,
for the caller to save (``completed_rung_{r}``, Optuna's own key), so that
:meth:`restore` rebuilds the state from the study in one pass.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from mlframework.sweep.records.pareto import Fronts

RungCallback = Callable[[int, int, float], None]  # (trial number, rung, value)
VectorRungCallback = Callable[[int, int, list[float]], None]  # (trial number, rung, objective values)


def rung_key(rung: int) -> str:
    """The system attribute of a trial's value at ``rung`` (Optuna's ``completed_rung_{rung}``)."""
    return f"completed_rung_{rung}"


@dataclass
class _Running:
    """What a pruner keeps of a trial not yet told: its reports and where it stands."""

    values: dict[int, float] = field(default_factory=dict)  # step -> value
    last_step: int = -1
    best: float = math.nan
    rung: int = 0  # the first rung it has not recorded a value at


class Pruner:
    """What the search's source calls; subclasses decide."""

    def __init__(self, maximize: bool, on_rung: RungCallback | None = None) -> None:
        self.maximize = maximize
        self.on_rung = on_rung
        self.running: dict[int, _Running] = {}

    def reported(self, number: int, step: int, value: float) -> None:
        """Trial ``number`` reported ``value`` at ``step`` (a step it had not reported)."""
        state = self.running.setdefault(number, _Running())
        state.values[step] = value
        if step > state.last_step:
            state.last_step = step
        if not math.isnan(value) and (
            math.isnan(state.best) or (value > state.best if self.maximize else value < state.best)
        ):
            state.best = value

    def decide(self, number: int) -> bool:
        """Whether trial ``number`` should be pruned now, after its latest reports."""
        state = self.running.get(number)
        if state is None or state.last_step < 0:
            return False
        return self._decide(number, state)

    def _decide(self, number: int, state: _Running) -> bool:
        raise NotImplementedError

    def finished(self, number: int, complete: bool) -> None:
        """Trial ``number`` was told (``complete``: with a value, not failed or pruned)."""
        self.running.pop(number, None)

    def restore(
        self, number: int, values: dict[int, float], rungs: dict[int, float], finished: bool, complete: bool
    ) -> None:
        """Rebuild from a trial of the study: its intermediate values, its recorded rung values, its state."""
        state = _Running()
        if finished:
            return
        self.running[number] = state
        for step, value in values.items():
            self.reported(number, step, value)
        state.rung = len(rungs)


class SuccessiveHalving(Pruner):
    """Asynchronous successive halving: promoted from a rung when in its top 1/rf (Optuna's semantics)."""

    def __init__(
        self,
        maximize: bool,
        min_resource: int = 1,
        reduction_factor: int = 4,
        rate: int = 0,
        on_rung: RungCallback | None = None,
    ) -> None:
        super().__init__(maximize, on_rung)
        if min_resource < 1 or reduction_factor < 2 or rate < 0:
            raise ValueError("min_resource >= 1, reduction_factor >= 2, rate >= 0")
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.rate = rate  # min_early_stopping_rate: hyperband's bracket
        self.rungs: list[SortedList] = []

    def _rung(self, rung: int) -> SortedList:
        while len(self.rungs) <= rung:
            self.rungs.append(SortedList())
        return self.rungs[rung]

    def _decide(self, number: int, state: _Running) -> bool:
        step, value = state.last_step, state.values[state.last_step]
        while True:
            if step < self.min_resource * self.reduction_factor ** (self.rate + state.rung):
                return False
            if math.isnan(value):
                return True
            values = self._rung(state.rung)
            values.add(value)
            if self.on_rung is not None:
                self.on_rung(number, state.rung, value)
            state.rung += 1
            if not self._promotable(value, values):
                return True

    def _promotable(self, value: float, values: SortedList) -> bool:
        # Optuna's rule: the value must rank within the top len // rf (the best one while fewer than rf).
        index = max(len(values) // self.reduction_factor - 1, 0)
        if self.maximize:
            return bool(value >= values[len(values) - 1 - index])
        return bool(value <= values[index])

    def restore(
        self, number: int, values: dict[int, float], rungs: dict[int, float], finished: bool, complete: bool
    ) -> None:
        for rung, value in rungs.items():
            self._rung(rung).add(value)
        super().restore(number, values, rungs, finished, complete)


class Hyperband(Pruner):
    """Hyperband over successive halvings, one per bracket, trials assigned to brackets as Optuna does."""

    def __init__(
        self,
        maximize: bool,
        study_name: str,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int | None = None,
        on_rung: RungCallback | None = None,
    ) -> None:
        super().__init__(maximize, on_rung)
        self.study_name = study_name
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.max_resource = max_resource  # None until a trial completes ("auto")
        self.completed_steps = -1  # the largest last step of a completed trial
        self.brackets: list[SuccessiveHalving] = []
        self.budgets: list[int] = []
        self._restored: list[tuple[int, dict[int, float]]] = []  # rung values restored before the brackets exist

    def _initialize(self) -> bool:
        if self.brackets:
            return True
        if self.max_resource is None:
            if self.completed_steps < 0:
                return False
            self.max_resource = self.completed_steps + 1
        n_brackets = math.floor(math.log(self.max_resource / self.min_resource, self.reduction_factor)) + 1
        for bracket in range(n_brackets):
            s = n_brackets - 1 - bracket
            self.budgets.append(math.ceil(n_brackets * self.reduction_factor**s / (s + 1)))
            self.brackets.append(
                SuccessiveHalving(self.maximize, self.min_resource, self.reduction_factor, bracket, self.on_rung)
            )
        for number, rungs in self._restored:
            for rung, value in rungs.items():
                self.brackets[self.bracket(number)]._rung(rung).add(value)
        self._restored.clear()
        return True

    def bracket(self, number: int) -> int:
        """The bracket of trial ``number`` (Optuna's ``_get_bracket_id``); the brackets must exist."""
        n = binascii.crc32(f"{self.study_name}_{number}".encode()) % sum(self.budgets)
        for bracket, budget in enumerate(self.budgets):
            n -= budget
            if n < 0:
                return bracket
        raise AssertionError("unreachable: n < the budgets' sum")

    def _decide(self, number: int, state: _Running) -> bool:
        if not self._initialize():
            return False
        return self.brackets[self.bracket(number)]._decide(number, state)

    def finished(self, number: int, complete: bool) -> None:
        state = self.running.get(number)
        if complete and state is not None:
            self.completed_steps = max(self.completed_steps, state.last_step)
        super().finished(number, complete)

    def restore(
        self, number: int, values: dict[int, float], rungs: dict[int, float], finished: bool, complete: bool
    ) -> None:
        if complete and values:
            self.completed_steps = max(self.completed_steps, max(values))
        if rungs and self.brackets:
            bracket = self.brackets[self.bracket(number)]
            for rung, value in rungs.items():
                bracket._rung(rung).add(value)
        elif rungs:
            self._restored.append((number, rungs))
        super().restore(number, values, rungs, finished, complete)


class Median(Pruner):
    """Pruned when its best value is worse than the median of completed trials at the same step."""

    def __init__(self, maximize: bool, n_startup_trials: int = 3, n_warmup_steps: int = 2) -> None:
        super().__init__(maximize)
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.completed = 0
        self.steps: dict[int, SortedList] = {}  # step -> completed trials' values there

    def _decide(self, number: int, state: _Running) -> bool:
        if self.completed == 0 or self.completed < self.n_startup_trials or state.last_step < self.n_warmup_steps:
            return False
        if math.isnan(state.best):
            return True
        values = self.steps.get(state.last_step)
        if not values:
            return False
        median = _median(values)
        return state.best < median if self.maximize else state.best > median

    def _complete(self, values: dict[int, float]) -> None:
        self.completed += 1
        for step, value in values.items():
            if not math.isnan(value):  # numpy's nanpercentile leaves NaNs out
                self.steps.setdefault(step, SortedList()).add(value)

    def finished(self, number: int, complete: bool) -> None:
        state = self.running.get(number)
        if complete:
            self._complete(state.values if state is not None else {})
        super().finished(number, complete)

    def restore(
        self, number: int, values: dict[int, float], rungs: dict[int, float], finished: bool, complete: bool
    ) -> None:
        if complete:
            self._complete(values)
        super().restore(number, values, rungs, finished, complete)


@dataclass
class _RunningVector:
    """What the multi-objective pruner keeps of a trial not yet told."""

    values: dict[int, tuple[float | None, ...]] = field(default_factory=dict)  # step -> objective values then
    last_step: int = -1
    rung: int = 0  # the first rung it has not recorded values at


class MultiObjectiveSuccessiveHalving:
    """Multi-objective ASHA: promoted from a rung when its non-dominated rank there is in the top 1/rf.

    ``maximize`` says, per objective, whether larger is better. Each report gives a
    value per objective (None: not reported at that step); an objective not
    reported at a step keeps its last value, and a trial is judged at a rung only
    once every objective has a value.
    """

    def __init__(
        self,
        maximize: Sequence[bool],
        min_resource: int = 1,
        reduction_factor: int = 4,
        on_rung: VectorRungCallback | None = None,
    ) -> None:
        if min_resource < 1 or reduction_factor < 2 or not maximize:
            raise ValueError("min_resource >= 1, reduction_factor >= 2, one objective at least")
        self.signs = tuple(-1.0 if larger else 1.0 for larger in maximize)  # values turned smaller-is-better
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.on_rung = on_rung
        self.rungs: list[Fronts] = []  # each rung's vectors (smaller-is-better) in non-dominated fronts
        self.running: dict[int, _RunningVector] = {}

    def reported(self, number: int, step: int, values: Sequence[float | None]) -> None:
        """Trial ``number`` reported ``values`` (one per objective, None where absent) at a new ``step``."""
        state = self.running.setdefault(number, _RunningVector())
        earlier = [step_ for step_ in state.values if step_ < step]
        before = state.values[max(earlier)] if earlier else (None,) * len(self.signs)
        state.values[step] = tuple(new if new is not None else old for new, old in zip(values, before))
        state.last_step = max(state.last_step, step)

    def decide(self, number: int) -> bool:
        """Whether trial ``number`` should be pruned now, after its latest reports."""
        state = self.running.get(number)
        if state is None or state.last_step < 0:
            return False
        step, values = state.last_step, state.values[state.last_step]
        if any(value is None for value in values):
            return False  # not every objective reported yet: no rung can judge it
        point = tuple(sign * float(value) for sign, value in zip(self.signs, values) if value is not None)
        while step >= self.min_resource * self.reduction_factor**state.rung:
            if any(math.isnan(value) for value in point):
                return True
            rung = self._rung(state.rung)
            better = rung.add(point)
            if self.on_rung is not None:
                self.on_rung(number, state.rung, [float(value) for value in values if value is not None])
            state.rung += 1
            if better >= max(len(rung) // self.reduction_factor, 1):  # not in the top 1/rf by rank
                return True
        return False

    def _rung(self, rung: int) -> Fronts:
        while len(self.rungs) <= rung:
            self.rungs.append(Fronts())
        return self.rungs[rung]

    def finished(self, number: int, complete: bool) -> None:
        """Trial ``number`` was told."""
        self.running.pop(number, None)

    def restore(
        self,
        number: int,
        rungs: dict[int, list[float]],
        last: tuple[int, list[float | None]] | None,
        finished: bool,
    ) -> None:
        """Rebuild from a trial of the study: its rung vectors, its last (step, values), whether it was told."""
        for rung, values in sorted(rungs.items()):
            self._rung(rung).add(tuple(sign * value for sign, value in zip(self.signs, values)))
        if finished:
            return
        state = self.running[number] = _RunningVector(rung=len(rungs))
        if last is not None:
            state.values[last[0]] = tuple(last[1])
            state.last_step = last[0]


def _median(values: SortedList) -> float:
    """``numpy.percentile(values, 50)`` (linear), with numpy's own rounding, of values sorted."""
    position = (len(values) - 1) * 0.5
    low = math.floor(position)
    a, b = values[low], values[min(low + 1, len(values) - 1)]
    t = position - low
    return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)


# Multi-objective ASHA's rungs (``--prune asha`` with several objectives): gentler than asha's (1, 4), chosen on
# LCBench (bench/README.md, "Several objectives"): judged at step 1 of 52, the trials that go on are those
# fast from the first step, and the front misses its accurate end.
MO_MIN_RESOURCE = 3
MO_REDUCTION_FACTOR = 4


def make_vector_pruner(
    maximize: Sequence[bool], on_rung: VectorRungCallback | None = None
) -> MultiObjectiveSuccessiveHalving:
    """``--prune asha`` with several objectives: multi-objective ASHA with our rungs."""
    return MultiObjectiveSuccessiveHalving(maximize, MO_MIN_RESOURCE, MO_REDUCTION_FACTOR, on_rung)


def make_pruner(
    name: str, maximize: bool, study_name: str, max_resource: int | None = None, on_rung: RungCallback | None = None
) -> Pruner | None:
    """The pruner of ``--prune NAME`` with our settings (None for ``none``)."""
    if name == "median":
        return Median(maximize, n_startup_trials=3, n_warmup_steps=2)
    if name == "hyperband":
        return Hyperband(
            maximize, study_name, min_resource=1, reduction_factor=3, max_resource=max_resource, on_rung=on_rung
        )
    if name == "asha":
        return SuccessiveHalving(maximize, min_resource=1, reduction_factor=4, on_rung=on_rung)
    return None
