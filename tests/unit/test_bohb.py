"""``--search bohb``: the sampler's decisions, deterministic with a seed, the same after a resume, edges reached."""

from __future__ import annotations

import math
import shutil

import optuna
import pytest

from mlframework.sweep.params.space import parse_space
from mlframework.sweep.search.bohb import BohbSampler, budget_values
from mlframework.sweep.search.plan import SearchSettings
from mlframework.sweep.search.study import JOURNAL, SearchSource

SPACE = """\
lr: !loguniform [0.0001, 0.1]
batch: !int [16, 512, log]
dropout: !uniform [0.0, 1.0]
layers: !int [1, 5]
act: [relu, tanh]
"""


def _curve(params, steps=9):
    """A learning curve whose best configuration is in a corner: largest lr, smallest batch, no dropout."""
    quality = (
        math.log10(params["lr"]) / 3
        + 4 / 3  # 0 .. 1
        - math.log2(params["batch"] / 16) / 5  # 0 .. 1
        - params["dropout"]
        + (0.2 if params["act"] == "relu" else 0.0)
    )
    return [quality * (1 - math.exp(-(step + 1) / 3)) for step in range(steps)]


def _source(directory, seed=0, trials=60, space=SPACE, prune="asha"):
    directory.mkdir(exist_ok=True)
    settings = SearchSettings(sampler="bohb", trials=trials, seed=seed, prune=prune)
    return SearchSource(parse_space(space), settings, directory, "s1", "score", "max")


def _run(source, count, in_flight=2):
    """``count`` trials with ``in_flight`` running at once: ask, report the curve, tell; the params asked."""
    asked = []
    running = []
    for _ in range(count):
        while len(running) >= in_flight:
            _finish(source, running.pop(0))
        got = source.ask()
        assert got is not None
        asked.append(got)
        running.append(got)
    return asked, running


def _finish(source, asked):
    number, params = asked
    pruned = False
    value = math.nan
    for step, value in enumerate(_curve(params)):
        if source.report(number, [{"step": step, "values": {"score": value}}]):
            pruned = True
            break
    record = {"status": "FAILURE" if pruned else "SUCCESS", "metrics": {"score": value}, "stopped": pruned}
    source.tell(number, record)


def test_a_trials_value_at_each_budget_is_its_last_report_up_to_that_step():
    trial = optuna.trial.create_trial(
        params={},
        distributions={},
        value=0.9,
        intermediate_values={0: 0.1, 1: 0.2, 2: 0.3, 4: 0.5, 10: 0.8},
    )
    assert budget_values(trial, eta=3) == {1: 0.2, 3: 0.3, 9: 0.5, math.inf: 0.9}
    running = optuna.trial.create_trial(
        params={}, distributions={}, state=optuna.trial.TrialState.RUNNING, intermediate_values={0: 0.1, 1: 0.4}
    )
    assert budget_values(running, eta=3) == {1: 0.4}, "a budget counts once the trial reached it"


def test_the_model_is_fit_at_the_largest_budget_with_enough_trials():
    sampler = BohbSampler(seed=0)
    values = [{1: 0.1, 3: 0.2}] * 6 + [{1: 0.1, 3: 0.2, 9: 0.3, math.inf: 0.4}] * 2
    assert sampler.choose_budget(values, needed=8) == 3
    assert sampler.choose_budget(values, needed=2) == math.inf
    assert sampler.choose_budget(values, needed=9) is None


def test_the_same_seed_and_results_give_the_same_trials(tmp_path):
    first, _ = _run(_source(tmp_path / "a", seed=7), 30)
    second, _ = _run(_source(tmp_path / "b", seed=7), 30)
    other, _ = _run(_source(tmp_path / "c", seed=8), 30)
    assert first == second
    assert first != other


def test_a_resumed_driver_makes_the_decisions_the_uninterrupted_one_makes(tmp_path):
    """Killed after 25 trials (2 still running), resumed from its journal: the next trials are the same."""
    source = _source(tmp_path / "a", seed=3)
    _run(source, 25)
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / JOURNAL, tmp_path / "b" / JOURNAL)  # what a killed driver left on disk
    resumed = _source(tmp_path / "b", seed=3)
    assert resumed.untold() == source.untold() and len(resumed.untold()) == 2
    assert [resumed.ask() for _ in range(3)] == [source.ask() for _ in range(3)]


def test_the_model_takes_over_from_the_random_start_and_finds_the_corner(tmp_path):
    source = _source(tmp_path, seed=0, trials=80)
    calls = {"model": 0}
    sampler = source.study.sampler
    assert isinstance(sampler, BohbSampler)
    fit = sampler._from_model

    def counted(*args):
        proposed = fit(*args)
        calls["model"] += proposed is not None
        return proposed

    sampler._from_model = counted  # type: ignore[method-assign]
    asked, _ = _run(source, 80)
    assert calls["model"] >= 40, "most trials after the first ones come from the model"
    late = [params for _number, params in asked[40:]]
    for name, bound in (("lr", 0.1), ("batch", 16), ("dropout", 0.0)):
        on_bound = sum(params[name] == bound for params in late)
        assert on_bound >= 5, f"clipped kernels put trials exactly on {name}'s bound ({on_bound} of 40)"
    best = max(_curve(p)[-1] for _n, p in asked)
    assert best == pytest.approx(_curve({"lr": 0.1, "batch": 16, "dropout": 0.0, "act": "relu"})[-1], abs=0.01)


def test_random_draws_put_coordinates_on_the_bounds(tmp_path):
    source = _source(tmp_path, seed=1, trials=200, space="x: !uniform [2.0, 3.0]\nn: !int [1, 9]\n", prune="none")
    for _ in range(100):  # nothing told: every draw is random
        source.ask()
    # Every draw, those the source refused as repeats included (a bound is a point that repeats).
    xs = [trial.params["x"] for trial in source.study.trials]
    on_bounds = sum(x in (2.0, 3.0) for x in xs)
    assert 0.08 <= on_bounds / len(xs) <= 0.35, (on_bounds, len(xs))  # edge_probability 0.2
    assert all(2.0 <= x <= 3.0 for x in xs)


def test_conditional_parameters_are_drawn_too(tmp_path):
    space = "opt:\n  sgd:\n    momentum: !uniform [0.0, 0.99]\n  adam: {}\nlr: !loguniform [0.001, 0.1]\n"
    source = _source(tmp_path, seed=0, trials=30, space=space)
    seen = set()
    for _ in range(30):
        number, params = source.ask()
        seen.add(params["opt"])
        assert ("momentum" in params) == (params["opt"] == "sgd")
        source.tell(number, {"status": "SUCCESS", "metrics": {"score": params["lr"]}})
    assert seen == {"sgd", "adam"}


@pytest.mark.parametrize("prune", ["none", "hyperband"])
def test_lists_and_intervals_of_a_grid_file_are_searched_without_repeating_a_point(tmp_path, prune):
    """A grid's lists, list values and !!python/tuple intervals, trials reporting only a final value (or steps)."""
    grid = (
        "lr: [0.1, 0.01, 0.001]\nact: [relu, tanh]\nlayers: [[64, 64], [128]]\n"
        "x: !!python/tuple [0.0, 1.0, 0.1]\nflag: [true, false]\ngpu: -1\n"
    )
    source = _source(tmp_path, seed=4, trials=40, space=grid, prune=prune)
    asked = []
    for _ in range(40):
        number, params = source.ask()
        asked.append(params)
        score = -abs(params["x"] - 0.7) + (params["act"] == "relu") + len(params["layers"]) / 4
        if prune != "none":
            for step in range(3):
                source.report(number, [{"step": step, "values": {"score": score * (step + 1)}}])
        source.tell(number, {"status": "SUCCESS", "metrics": {"score": score}, "stopped": False})
    assert len({repr(sorted(params.items())) for params in asked}) == 40, "no point twice"
    assert len(source.study.trials) <= 44, "hardly an ask wasted on a point tried before"
    assert {params["lr"] for params in asked} == {0.1, 0.01, 0.001} and {True, False} <= {p["flag"] for p in asked}
    best = source.study.best_trial.user_attrs["params"]
    assert (best["act"], best["layers"]) == ("relu", [64, 64]) and abs(best["x"] - 0.7) < 0.15
