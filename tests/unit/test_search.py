"""The search's trial source: what it asks, tells and prunes (no broker)."""

from __future__ import annotations

import pytest

from mlframework.exceptions import ConfigError
from mlframework.statuses import PRUNED
from mlframework.sweep.params.space import parse_space
from mlframework.sweep.search.plan import SearchSettings
from mlframework.sweep.search.study import SearchSource


def _source(tmp_path, text="x: !uniform [0, 1]\n", **settings):
    space = parse_space(text)
    return SearchSource(space, SearchSettings(**settings), tmp_path, "s1", "score", "max")


def _ok(score):
    return {"status": "SUCCESS", "metrics": {"score": score}}


def test_trials_counts_every_trial_asked_and_then_stops(tmp_path):
    source = _source(tmp_path, trials=5, sampler="random", seed=1)
    asked = [source.ask() for _ in range(7)]
    assert [a[0] for a in asked if a] == [0, 1, 2, 3, 4]
    assert asked[5:] == [None, None] and source.exhausted


def test_a_discrete_space_never_gets_the_same_point_twice_and_ends_when_exhausted(tmp_path):
    source = _source(tmp_path, "a: [1, 2, 3]\nb: [x, y]\n", trials=50, sampler="tpe", seed=3)
    points = []
    while (asked := source.ask()) is not None:
        points.append(tuple(asked[1].values()))
        source.tell(asked[0], _ok(1.0))
    assert len(points) == len(set(points)) == 6


def test_the_grid_sampler_in_flight_never_repeats_a_point(tmp_path):
    source = _source(tmp_path, "a: !int [1, 4]\n", trials=10, sampler="grid", seed=0)
    in_flight = [source.ask() for _ in range(4)]  # four workers, nothing told yet
    assert sorted(a[1]["a"] for a in in_flight if a) == [1, 2, 3, 4]
    assert source.ask() is None


def test_a_reopened_study_continues_and_knows_what_was_asked_and_told(tmp_path):
    first = _source(tmp_path, trials=4, sampler="tpe", seed=0)
    for _ in range(3):
        assert first.ask() is not None
    first.tell(0, _ok(0.5))
    first.tell(1, {"status": "FAILURE", "metrics": {}})
    again = _source(tmp_path, trials=4, sampler="tpe", seed=0)
    assert again.asked == 3 and again.untold() == [2]
    assert again.params(2) == first.params(2)
    assert again.ask()[0] == 3 and again.ask() is None


def test_median_pruning_stops_a_trial_behind_the_median_at_the_same_step(tmp_path):
    source = _source(tmp_path, trials=10, sampler="random", seed=0, prune="median")
    for score in (1.0, 2.0, 3.0):
        number, _ = source.ask()
        assert not source.report(number, [{"step": s, "values": {"score": score * (s + 1)}} for s in range(4)])
        source.tell(number, _ok(score * 4))
    poor, _ = source.ask()
    assert not source.report(poor, [{"step": 0, "values": {"score": 0.1}}]), "no decision in the warm-up steps"
    assert source.report(poor, [{"step": s, "values": {"score": 0.1 * (s + 1)}} for s in (1, 2)])
    assert source.tell(poor, {"status": "FAILURE", "error": "killed by SIGTERM", "metrics": {"score": 0.3}}) == PRUNED
    assert _source(tmp_path, trials=10, prune="median").pruned == {poor}, "the decision survives a resume"


def test_a_trial_that_ends_on_its_own_before_its_stop_arrives_is_the_success_it_is(tmp_path):
    source = _source(tmp_path, trials=10, sampler="random", seed=0, prune="median")
    for score in (1.0, 2.0, 3.0):
        number, _ = source.ask()
        source.report(number, [{"step": s, "values": {"score": score * (s + 1)}} for s in range(4)])
        source.tell(number, _ok(score * 4))
    late, _ = source.ask()
    assert source.report(late, [{"step": s, "values": {"score": 0.1 * (s + 1)}} for s in range(3)])
    assert source.tell(late, _ok(0.4)) == "SUCCESS", "it was never stopped: its whole result counts"
    assert source.study.trials[late].value == 0.4
    assert late not in _source(tmp_path, trials=10, prune="median").pruned


def test_no_pruning_without_prune(tmp_path):
    source = _source(tmp_path, trials=10, sampler="random")
    for _ in range(4):
        number, _ = source.ask()
        assert not source.report(number, [{"step": 0, "values": {"score": 0.0}}])


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="--search"):
        SearchSettings(sampler="bayes")
    assert SearchSettings.from_meta(SearchSettings("qmc", 7, 3).to_meta()) == SearchSettings("qmc", 7, 3)


def test_a_metric_asked_in_one_spelling_is_found_in_another_to_prune_and_to_tell(tmp_path):
    space = parse_space("x: !uniform [0, 1]\n")
    source = SearchSource(
        space, SearchSettings(sampler="random", seed=0, prune="median"), tmp_path, "s1", "Val Loss", "min"
    )
    for loss in (1.0, 2.0, 3.0):
        number, _ = source.ask()
        source.report(number, [{"step": s, "values": {"val_loss": loss / (s + 1)}} for s in range(4)])
        source.tell(number, {"status": "SUCCESS", "metrics": {"val_loss": loss / 4}})
    assert [t.value for t in source.study.trials[:3]] == [0.25, 0.5, 0.75]
    poor, _ = source.ask()
    source.report(poor, [{"step": 0, "values": {"val loss": 9.0}}])
    assert source.report(poor, [{"step": s, "values": {"val loss": 9.0}} for s in (1, 2)]), "printed as 'val loss'"
