"""Our O(log n) pruners decide as Optuna's pruners do, and rebuild their state from what they recorded."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlframework.sweep.search.pruners import Hyperband, Median, Pruner, SuccessiveHalving, make_pruner

optuna.logging.set_verbosity(optuna.logging.ERROR)

SLOTS = 4  # trials running at once
VALUES = st.one_of(st.integers(0, 6).map(float), st.floats(-10, 10, allow_nan=False))  # small integers: ties
INCREMENTS = st.sampled_from([1, 1, 1, 2, 4])  # mostly step by step, as epochs come: trials meet at the same steps


def _actions(values: st.SearchStrategy[float] = VALUES) -> st.SearchStrategy[list[Any]]:
    """What running trials do, in turn: report a batch of (step increment, value), complete or fail."""
    batch = st.lists(st.tuples(INCREMENTS, values), min_size=1, max_size=3)
    kinds = st.sampled_from(["report"] * 3 + ["complete", "complete", "fail"])
    return st.lists(st.tuples(st.integers(0, SLOTS - 1), kinds, batch), min_size=20, max_size=100)


ACTIONS = _actions()


class _Ours:
    """Our pruner with what it recorded kept as the study keeps it (rung values, reports, states)."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.rungs: dict[int, dict[int, float]] = {}
        self.values: dict[int, dict[int, float]] = {}
        self.states: dict[int, str] = {}
        self.pruner: Pruner = make(self._rung)

    def _rung(self, number: int, rung: int, value: float) -> None:
        assert rung == len(self.rungs.setdefault(number, {})), "rungs are recorded in order"
        self.rungs[number][rung] = value

    def reopen(self) -> None:
        """A new pruner rebuilt from the record, as SearchSource does at --resume (hyperband's resource kept)."""
        max_resource = getattr(self.pruner, "max_resource", None)
        self.pruner = self.make(self._rung)
        if max_resource is not None:
            self.pruner.max_resource = max_resource  # type: ignore[attr-defined]
        for number in sorted(self.values):
            state = self.states.get(number, "running")
            self.pruner.restore(
                number,
                dict(self.values[number]),
                dict(self.rungs.get(number, {})),
                state != "running",
                state == "complete",
            )


def _play(actions: list[Any], optuna_pruner: Any, ours: _Ours, maximize: bool, reopen_at: int | None = None) -> int:
    """Drive an Optuna study with ``optuna_pruner`` and ours through the same reports; decisions must agree."""
    study = optuna.create_study(study_name="s1", direction="maximize" if maximize else "minimize", pruner=optuna_pruner)
    slots: dict[int, Any] = {}
    last_step: dict[int, int] = {}
    decisions = 0
    for index, (slot, kind, batch) in enumerate(actions):
        if index == reopen_at:
            ours.reopen()
        trial = slots.get(slot)
        if trial is None:
            trial = slots[slot] = study.ask()
            ours.values[trial.number] = {}
        number = trial.number
        if kind == "report":
            for increment, value in batch:
                step = last_step.get(number, -1) + increment
                last_step[number] = step
                trial.report(value, step)
                ours.values[number][step] = value
                ours.pruner.reported(number, step, value)
            expected = trial.should_prune()
            assert ours.pruner.decide(number) == expected, f"trial {number} after step {step}"
            decisions += 1
            if expected:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                ours.states[number] = "pruned"
                ours.pruner.finished(number, complete=False)
                del slots[slot]
        else:
            complete = kind == "complete"
            values = ours.values[number]
            if complete:
                study.tell(trial, values[max(values)] if values else 0.0)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            ours.states[number] = kind
            ours.pruner.finished(number, complete=complete)
            del slots[slot]
    return decisions


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(ACTIONS, st.sampled_from([2, 3, 4]), st.booleans())
def test_successive_halving_decides_as_optunas(actions, factor, maximize):
    ours = _Ours(lambda on_rung: SuccessiveHalving(maximize, 1, factor, on_rung=on_rung))
    _play(actions, optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=factor), ours, maximize)


@PROPERTY
@given(ACTIONS, st.sampled_from([2, 3]), st.booleans())
def test_hyperband_decides_as_optunas(actions, factor, maximize):
    ours = _Ours(lambda on_rung: Hyperband(maximize, "s1", 1, factor, on_rung=on_rung))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's "experimental" notices
        optuna_pruner = optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=factor)
    _play(actions, optuna_pruner, ours, maximize)


@PROPERTY
@given(_actions(st.integers(0, 3).map(float)), st.booleans())
def test_median_decides_as_optunas(actions, maximize):
    ours = _Ours(lambda on_rung: Median(maximize, n_startup_trials=3, n_warmup_steps=2))
    _play(actions, optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2), ours, maximize)


@PROPERTY
@given(ACTIONS, st.sampled_from(["asha", "median", "hyperband"]), st.booleans(), st.data())
def test_a_pruner_rebuilt_from_its_record_goes_on_deciding_the_same(actions, name, maximize, data):
    reopen_at = data.draw(st.integers(0, len(actions)))
    optuna_pruner = {
        "asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4),
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    }.get(name)
    if optuna_pruner is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna_pruner = optuna.pruners.HyperbandPruner(min_resource=1)
    ours = _Ours(lambda on_rung: make_pruner(name, maximize, "s1", on_rung=on_rung))
    _play(actions, optuna_pruner, ours, maximize, reopen_at=reopen_at)


@pytest.mark.parametrize("maximize", [True, False])
def test_the_direction_decides_which_half_goes_on(maximize):
    pruner = SuccessiveHalving(maximize, min_resource=1, reduction_factor=2)
    for number, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        pruner.reported(number, 1, value)
        pruner.decide(number)
        pruner.finished(number, complete=True)
    pruner.reported(9, 1, 0.5)  # the worst when maximizing, the best when minimizing
    assert pruner.decide(9) is maximize
    median = Median(maximize, n_startup_trials=1, n_warmup_steps=0)
    for number, value in enumerate([1.0, 2.0, 3.0]):
        median.reported(number, 0, value)
        median.finished(number, complete=True)
    median.reported(9, 0, 1.5)  # below the median 2.0
    assert median.decide(9) is maximize


def test_hyperband_waits_for_a_completed_trial_and_keeps_its_maximum_resource():
    pruner = Hyperband(True, "s1", min_resource=1, reduction_factor=3)
    pruner.reported(0, 1, 0.0)
    assert not pruner.decide(0) and pruner.max_resource is None and not pruner.brackets
    for step in range(2, 53):
        pruner.reported(0, step, 0.0)
    pruner.finished(0, complete=True)
    pruner.reported(1, 1, 1.0)
    pruner.decide(1)
    assert pruner.max_resource == 53 and len(pruner.brackets) == 4  # floor(log3(53)) + 1
    again = Hyperband(True, "s1", max_resource=53)
    again.reported(1, 1, 1.0)
    again.decide(1)
    assert again.budgets == pruner.budgets, "a resumed study keeps the brackets it had"
