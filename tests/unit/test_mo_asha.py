"""Multi-objective ASHA (promoted by non-dominated rank at each rung; with one objective, exactly ASHA), and the
multi-objective search source it prunes for: resumed from its journal, constrained, refused where it cannot be."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlframework.exceptions import ConfigError
from mlframework.sweep.params.space import parse_space
from mlframework.sweep.records.objectives import Objective, parse_constraint
from mlframework.sweep.search.plan import SearchSettings
from mlframework.sweep.search.pruners import MultiObjectiveSuccessiveHalving, SuccessiveHalving
from mlframework.sweep.search.study import SearchSource

# (trial, step increment, value) reports in turn, a few trials running at once
REPORTS = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from([1, 1, 2, 4]), st.integers(0, 6).map(float)), max_size=80
)


@settings(max_examples=200, deadline=None)
@given(REPORTS, st.booleans(), st.sampled_from([2, 3, 4]))
def test_with_one_objective_it_decides_as_successive_halving(reports, maximize, factor):
    single = SuccessiveHalving(maximize, min_resource=1, reduction_factor=factor)
    vector = MultiObjectiveSuccessiveHalving([maximize], min_resource=1, reduction_factor=factor)
    steps: dict[int, int] = {}
    pruned: set[int] = set()
    for trial, increment, value in reports:
        if trial in pruned:
            continue
        step = steps[trial] = steps.get(trial, -1) + increment
        single.reported(trial, step, value)
        vector.reported(trial, step, [value])
        decided = single.decide(trial)
        assert vector.decide(trial) == decided
        if decided:
            pruned.add(trial)


def make(on_rung=None) -> MultiObjectiveSuccessiveHalving:
    # accuracy (max), latency (min); rungs at steps 1, 2, 4 (factor 2)
    return MultiObjectiveSuccessiveHalving([True, False], min_resource=1, reduction_factor=2, on_rung=on_rung)


def test_a_trial_goes_on_while_its_front_is_in_the_top_half_of_its_rung():
    pruner = make()
    reach = {0: (0.9, 10.0), 1: (0.8, 20.0), 2: (0.95, 30.0), 3: (0.85, 5.0)}
    decisions = {}
    for trial, (accuracy, latency) in reach.items():
        pruner.reported(trial, 0, [accuracy, latency])
        pruner.reported(trial, 1, [accuracy, latency])
        decisions[trial] = pruner.decide(trial)
    # t0 alone: goes on. t1 is dominated by t0 (1 better of 2, top 1 allowed): pruned. t2 is on the front with
    # t0 (0 better): goes on. t3 too: it dominates t1 and is not dominated (0 better of 4, top 2): goes on.
    assert decisions == {0: False, 1: True, 2: False, 3: False}
    assert [len(rung) for rung in pruner.rungs] == [4]
    assert pruner.rungs[0].fronts == [[(-0.9, 10.0), (-0.95, 30.0), (-0.85, 5.0)], [(-0.8, 20.0)]]


def test_an_objective_reported_once_keeps_its_value_and_a_trial_waits_for_every_objective():
    recorded = []
    pruner = make(lambda number, rung, values: recorded.append((number, rung, values)))
    pruner.reported(0, 0, [0.5, None])
    pruner.reported(0, 1, [0.6, None])
    assert not pruner.decide(0) and not pruner.rungs, "no latency yet: no rung can judge it"
    pruner.reported(0, 2, [0.7, 12.0])
    assert not pruner.decide(0)
    assert recorded == [(0, 0, [0.7, 12.0]), (0, 1, [0.7, 12.0])], "one batch crossing two rungs records both"
    pruner.reported(0, 3, [0.8, None])
    pruner.reported(0, 4, [0.9, None])
    assert not pruner.decide(0)
    assert recorded[-1] == (0, 2, [0.9, 12.0]), "latency kept from step 2"


def test_a_pruner_rebuilt_from_its_rung_values_decides_the_same():
    saved: dict[int, dict[int, list[float]]] = {}
    first = make(lambda number, rung, values: saved.setdefault(number, {}).__setitem__(rung, values))
    for trial, point in enumerate([(0.9, 10.0), (0.95, 30.0), (0.5, 40.0)]):
        first.reported(trial, 1, list(point))
        first.decide(trial)
    again = make()
    for trial in range(3):
        again.restore(trial, saved.get(trial, {}), (1, list(first.running[trial].values[1])), finished=False)
    for pruner in (first, again):
        pruner.reported(3, 1, [0.7, 20.0])
    assert first.decide(3) == again.decide(3)
    assert [r.ranks() for r in first.rungs] == [r.ranks() for r in again.rungs]


@pytest.mark.parametrize("bad", [{"maximize": []}, {"maximize": [True], "reduction_factor": 1}])
def test_settings_that_make_no_halving_are_refused(bad):
    with pytest.raises(ValueError):
        MultiObjectiveSuccessiveHalving(**bad)


OBJECTIVES = (Objective("accuracy", "max"), Objective("latency_ms", "min"))


def _mo_source(directory, **settings):
    space = parse_space("x: !uniform [0, 1]\ny: !uniform [0, 1]\n")
    defaults = {"sampler": "tpe", "trials": 16, "seed": 5, "prune": "asha"}
    return SearchSource(
        space, SearchSettings(**{**defaults, **settings}), directory, "mo", "accuracy", "max", OBJECTIVES
    )


def _history(params, step):
    x, y = params["x"], params["y"]
    return [{"step": step, "values": {"accuracy": x * (1 - y) * (step + 1), "latency_ms": 10 + x + y}}]


def _drive(source, numbers, params, steps, decisions, told):
    """Each trial reports steps in turn (trials interleaved); told once it reaches the last step or is pruned."""
    for step in steps:
        for number in numbers:
            if number in decisions:
                continue
            if source.report(number, _history(params[number], step)):
                decisions[number] = ("pruned", step)
            elif step == 7:
                last = _history(params[number], 7)[0]["values"]
                decisions[number] = ("told", source.tell(number, {"status": "SUCCESS", "metrics": last}))
    for number, (kind, _) in decisions.items():
        if kind == "pruned" and number not in told:
            told.add(number)
            source.tell(number, {"status": "SUCCESS", "metrics": {}, "stopped": "pruned"})


def test_a_multi_objective_search_resumed_from_its_journal_prunes_as_one_that_never_stopped(tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    whole.mkdir(), halves.mkdir()
    first = _mo_source(whole)
    params = dict(first.ask() for _ in range(10))
    expected: dict = {}
    _drive(first, list(params), params, range(8), expected, set())
    assert any(kind == "pruned" for kind, _ in expected.values()), expected
    assert any(kind == "told" for kind, _ in expected.values())
    assert [t.state.name for t in first.study.trials].count("PRUNED") == sum(
        1 for kind, _ in expected.values() if kind == "pruned"
    )

    before = _mo_source(halves)
    assert dict(before.ask() for _ in range(10)) == params, "the same seed asks the same points"
    got: dict = {}
    told: set[int] = set()
    _drive(before, list(params), params, range(3), got, told)  # steps 0-2, then the driver dies
    before.close()
    after = _mo_source(halves)  # --resume: rebuilt from study.journal
    _drive(after, list(params), params, range(3, 8), got, told)
    assert got == expected
    assert [r.ranks() for r in after.vector_pruner.rungs] == [r.ranks() for r in first.vector_pruner.rungs]
    assert {t.number for t in after.study.best_trials} == {t.number for t in first.study.best_trials}


def test_a_constraint_reaches_the_sampler_and_an_infeasible_trial_is_off_the_studys_front(tmp_path):
    space = parse_space("x: !uniform [0, 1]\n")
    settings = SearchSettings(sampler="tpe", trials=3, seed=1)
    limit = parse_constraint("memory_mb<8000")
    source = SearchSource(space, settings, tmp_path, "c", "accuracy", "max", OBJECTIVES, (limit,))
    for number, memory in enumerate([4000, 9000, 100]):
        assert source.ask() is not None
        metrics = {"accuracy": 0.9 + number / 100, "latency_ms": 10.0 - number, "memory_mb": memory}
        source.tell(number, {"status": "SUCCESS", "metrics": metrics})
    trials = source.study.trials
    assert [t.constraints["memory_mb<8000"] <= 0 for t in trials] == [True, False, True]
    assert {t.number for t in source.study.best_trials} == {2}, "trial 1 breaks the bound: never on the front"


@pytest.mark.parametrize(("setting", "message"), [({"sampler": "cmaes"}, "cmaes"), ({"prune": "median"}, "median")])
def test_a_search_that_cannot_take_several_objectives_is_refused_when_reopened_too(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        _mo_source(tmp_path, **setting)
