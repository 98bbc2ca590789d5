"""``--search bohb`` with several objectives: the good set by rank and hypervolume, rung values of pruned trials
modelled, the same decisions after a resume, a corner of the box on the front."""

from __future__ import annotations

import math
import shutil

import numpy as np
import optuna

from mlframework.sweep.params.space import parse_space
from mlframework.sweep.records.objectives import Objective
from mlframework.sweep.search.bohb import BohbSampler, _best_by_rank, rung_vectors
from mlframework.sweep.search.plan import SearchSettings
from mlframework.sweep.search.study import JOURNAL, SearchSource

OBJECTIVES = (Objective("score", "max"), Objective("cost", "min"))
SPACE = """\
lr: !loguniform [0.0001, 0.1]
dropout: !uniform [0.0, 1.0]
width: !int [1, 8]
"""
CORNER = {"lr": 0.1, "dropout": 0.0}


def _values(params, step):
    """Score: best in a corner (largest lr, no dropout), rising with the step, a little better wider; cost: the
    width. The front: that corner at each width."""
    quality = math.log10(params["lr"]) / 3 + 4 / 3 - params["dropout"]
    return {"score": quality * (1 - math.exp(-(step + 1) / 3)) + params["width"] / 40, "cost": params["width"]}


def _source(directory, seed=0, trials=80, prune="asha"):
    directory.mkdir(exist_ok=True)
    settings = SearchSettings(sampler="bohb", trials=trials, seed=seed, prune=prune)
    return SearchSource(parse_space(SPACE), settings, directory, "mo", "score", "max", OBJECTIVES)


def _finish(source, asked, steps=12):
    number, params = asked
    pruned = False
    values = {}
    for step in range(1, steps + 1):
        values = _values(params, step)
        if source.report(number, [{"step": step, "values": values}]):
            pruned = True
            break
    source.tell(number, {"status": "FAILURE" if pruned else "SUCCESS", "metrics": values, "stopped": pruned})


def _run(source, count, in_flight=2):
    asked, running = [], []
    for _ in range(count):
        while len(running) >= in_flight:
            _finish(source, running.pop(0))
        got = source.ask()
        assert got is not None
        asked.append(got)
        running.append(got)
    return asked, running


def test_the_good_set_is_whole_fronts_then_the_members_adding_most_hypervolume():
    points = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.45, 0.6], [0.9, 0.9], [2.0, 2.0]])
    assert sorted(_best_by_rank(points, 3)) == [0, 1, 2], "the whole first front"
    # Two of the first front, greedily: the middle one dominates most alone (objectives scaled to [0, 1] over
    # the points, reference 1.1), then either end adds as much: the earlier is kept.
    assert sorted(_best_by_rank(points, 2)) == [0, 1]
    assert sorted(_best_by_rank(points, 4)) == [0, 1, 2, 3], "then the second front's best"
    assert _best_by_rank(points, 9) == list(range(6))


def test_a_trials_vectors_are_its_rung_values_and_its_final_ones():
    trial = optuna.trial.create_trial(
        params={},
        distributions={},
        values=[0.9, 3.0],
        system_attrs={"completed_rung_0": [0.2, 3.0], "completed_rung_1": [0.5, 3.0]},
    )
    assert rung_vectors(trial, (-1.0, 1.0)) == {0: (-0.2, 3.0), 1: (-0.5, 3.0), math.inf: (-0.9, 3.0)}
    pruned = optuna.trial.create_trial(
        params={}, distributions={}, state=optuna.trial.TrialState.PRUNED, system_attrs={"completed_rung_0": [0.1, 2]}
    )
    assert rung_vectors(pruned, (-1.0, 1.0)) == {0: (-0.1, 2.0)}, "a pruned trial feeds the model at its rungs"


def test_the_same_seed_and_results_give_the_same_trials(tmp_path):
    first, _ = _run(_source(tmp_path / "a", seed=7), 30)
    second, _ = _run(_source(tmp_path / "b", seed=7), 30)
    other, _ = _run(_source(tmp_path / "c", seed=8), 30)
    assert first == second
    assert first != other, "the seed decides the draws (a sampler ignoring it would pass the line above)"


def test_a_resumed_driver_makes_the_decisions_the_uninterrupted_one_makes(tmp_path):
    """Killed after 30 trials (2 still running), resumed from its journal: the next trials are the same."""
    source = _source(tmp_path / "a", seed=3)
    _run(source, 30)
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / JOURNAL, tmp_path / "b" / JOURNAL)  # what a killed driver left on disk
    resumed = _source(tmp_path / "b", seed=3)
    assert resumed.untold() == source.untold() and len(resumed.untold()) == 2
    assert [resumed.ask() for _ in range(3)] == [source.ask() for _ in range(3)]


def test_pruned_trials_feed_the_model_and_a_corner_of_the_box_is_on_the_front(tmp_path):
    source = _source(tmp_path, seed=0, trials=100)
    sampler = source.study.sampler
    assert isinstance(sampler, BohbSampler)
    calls = {"model": 0}
    fit = sampler._from_model

    def counted(*args):
        proposed = fit(*args)
        calls["model"] += proposed is not None
        return proposed

    sampler._from_model = counted  # type: ignore[method-assign]
    asked, _ = _run(source, 100)
    states = [t.state for t in source.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) >= 20, "the pruner stopped trials"
    assert calls["model"] >= 50, "most trials after the first ones come from the model"
    late = asked[50:]
    for name, bound in CORNER.items():
        on_bound = sum(params[name] == bound for _n, params in late)
        assert on_bound >= 2, f"clipped kernels put trials exactly on {name}'s bound ({on_bound} of 50)"
    front = {t.number: t.user_attrs["params"] for t in source.study.best_trials}
    corner = [n for n, p in front.items() if {name: p[name] for name in CORNER} == CORNER]
    assert any(n >= late[0][0] for n in corner), f"a late trial in the corner is on the front: {front}"
