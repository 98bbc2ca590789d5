"""The Pareto front: non-dominated sorting checked by its definition, and a small grid's front by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlframework.exceptions import ConfigError
from mlframework.sweep.records.objectives import (
    Constraint,
    Objective,
    constraints_from_meta,
    objectives_from_meta,
    objectives_to_meta,
    parse_constraint,
    parse_objectives,
)
from mlframework.sweep.records.pareto import Fronts, dominates, nondominated_ranks, pareto_front, pareto_ranks

points_2d = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=40)
points_3d = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(points_2d, points_3d))
def test_the_front_is_exactly_the_points_no_point_dominates(points):
    ranks = nondominated_ranks(points)
    front = [p for p, rank in zip(points, ranks) if rank == 1]
    for p, rank in zip(points, ranks):
        dominated = any(dominates(q, p) for q in points)
        assert (rank == 1) == (not dominated)
        if rank > 1:
            assert any(dominates(q, p) for q in front), "every point off the front is dominated by one on it"


@settings(max_examples=300, deadline=None)
@given(st.one_of(points_2d, points_3d))
def test_each_rank_is_the_front_of_what_the_better_ranks_leave(points):
    ranks = nondominated_ranks(points)
    for p, rank in zip(points, ranks):
        assert not any(dominates(q, p) for q, r in zip(points, ranks) if r >= rank)
        if rank > 1:
            assert any(dominates(q, p) for q, r in zip(points, ranks) if r == rank - 1)


@settings(max_examples=300, deadline=None)
@given(st.one_of(points_2d, points_3d))
def test_fronts_kept_point_by_point_are_the_sort_of_all_points(points):
    fronts = Fronts()
    for number, p in enumerate(points):
        better = fronts.add(p)
        ranks = nondominated_ranks(points[: number + 1])
        assert better == sum(1 for rank in ranks if rank < ranks[-1]), "the points on better fronts than the new one"
    assert fronts.ranks() == dict(zip(map(tuple, points), nondominated_ranks(points)))
    assert len(fronts) == len(points)


def record(trial, accuracy, latency, status="SUCCESS", memory=100.0):
    metrics = {"accuracy": accuracy, "latency_ms": latency, "memory_mb": memory}
    return {"trial": trial, "index": int(trial[1:]), "status": status, "metrics": metrics}


OBJECTIVES = (Objective("accuracy", "max"), Objective("latency_ms", "min"))


def test_the_front_of_a_small_grid():
    records = [
        record("t0", 0.90, 10.0),  # front: the fastest
        record("t1", 0.95, 20.0),  # front
        record("t2", 0.93, 25.0),  # dominated by t1
        record("t3", 0.97, 40.0),  # front: the most accurate
        record("t4", 0.97, 45.0),  # dominated by t3 (as accurate, slower)
        record("t5", 0.99, 5.0, status="FAILURE"),  # would dominate all: failed, so never on the front
        record("t6", 0.99, 5.0, status="PRUNED"),  # pruned: neither
        {"trial": "t7", "index": 7, "status": "SUCCESS", "metrics": {"accuracy": 0.99}},  # no latency
        record("t8", 0.95, 20.0),  # the same as t1: both on the front
    ]
    assert [r["trial"] for r in pareto_front(records, OBJECTIVES)] == ["t3", "t1", "t8", "t0"]
    assert pareto_ranks(records, OBJECTIVES) == {"t0": 1, "t1": 1, "t2": 2, "t3": 1, "t4": 2, "t8": 1}


def test_a_trial_breaking_a_constraint_is_never_on_the_front():
    records = [record("t0", 0.90, 10.0), record("t1", 0.97, 40.0, memory=9000.0), record("t2", 0.93, 30.0)]
    constraints = (parse_constraint("memory_mb<8000"),)
    assert [r["trial"] for r in pareto_front(records, OBJECTIVES, constraints)] == ["t2", "t0"]
    assert [r["trial"] for r in pareto_front(records, OBJECTIVES)] == ["t1", "t2", "t0"]


def test_objectives_are_parsed_with_their_direction_given_or_guessed():
    assert parse_objectives(["accuracy:max", "latency_ms:min"]) == OBJECTIVES
    assert parse_objectives(["val loss", "accuracy"]) == (Objective("val loss", "min"), Objective("accuracy", "max"))
    assert parse_objectives(["score"], "min") == (Objective("score", "min"),)
    with pytest.raises(ConfigError, match="--mode applies to one --metric"):
        parse_objectives(["a", "b"], "max")
    with pytest.raises(ConfigError, match="each metric once"):
        parse_objectives(["a:max", "a:min"])
    with pytest.raises(ConfigError, match="disagree"):
        parse_objectives(["a:max"], "min")
    assert objectives_from_meta({"objectives": objectives_to_meta(OBJECTIVES)}) == OBJECTIVES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("memory_mb<8000", Constraint("memory_mb", "<", 8000.0)),
        (" val loss <= 0.5 ", Constraint("val loss", "<=", 0.5)),
        ("params>1e6", Constraint("params", ">", 1e6)),
        ("acc>=0.9", Constraint("acc", ">=", 0.9)),
    ],
)
def test_constraints_are_parsed(text, expected):
    assert parse_constraint(text) == expected
    assert constraints_from_meta({"constraints": [str(expected)]}) == (expected,)


@pytest.mark.parametrize("text", ["memory_mb", "memory_mb<", "<8000", "memory_mb<lots", "a=3"])
def test_a_constraint_that_is_not_one_is_refused_in_one_line(text):
    with pytest.raises(ConfigError, match="--constraint"):
        parse_constraint(text)


def test_a_constraint_holds_or_is_broken_as_optuna_counts_it():
    limit = parse_constraint("memory_mb<8000")
    assert limit.holds({"memory_mb": 7999}) and limit.violation({"memory_mb": 7999}) <= 0
    assert not limit.holds({"memory_mb": 8000}) and limit.violation({"memory_mb": 8000}) > 0
    assert not limit.holds({}) and limit.violation({}) > 0
