"""The search-space grammar of parameters.yml (mlframework/sweep/params/space.py)."""

from __future__ import annotations

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlframework.exceptions import GridError
from mlframework.sweep.params.grid_file import parse_grid
from mlframework.sweep.params.space import (
    CATEGORICAL,
    FIXED,
    INT,
    INTERVAL,
    LOGUNIFORM,
    UNIFORM,
    is_search_space,
    parse_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = """\
gpu: -1
lr: !loguniform [1.0e-4, 0.1]
dropout: !uniform [0.0, 0.5]
unit: !int [16, 512, log]
epoch: !int [5, 20]
batchsize: !int [64, 512, 64]
activation: [relu, tanh]
seed: !!python/tuple [0.1, 0.5, 0.1]
optimizer:
  sgd:
    momentum: !uniform [0.0, 0.99]
  adam:
    beta1: !uniform [0.8, 0.999]
  rmsprop: {}
"""


def _sample(space, seed: int = 0, n: int = 30):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(study.ask()) for _ in range(n)]


def test_every_kind_is_read_in_file_order_with_its_bounds():
    space = parse_space(SPACE, "s.yml")
    kinds = {d.name: d.kind for _depth, d in space.walk()}
    assert kinds == {
        "gpu": FIXED,
        "lr": LOGUNIFORM,
        "dropout": UNIFORM,
        "unit": INT,
        "epoch": INT,
        "batchsize": INT,
        "activation": CATEGORICAL,
        "seed": INTERVAL,
        "optimizer": CATEGORICAL,
        "momentum": UNIFORM,
        "beta1": UNIFORM,
    }
    unit = next(d for _, d in space.walk() if d.name == "unit")
    assert (unit.low, unit.high, unit.log) == (16, 512, True)


def test_samples_stay_in_their_distributions_and_conditionals_follow_their_choice():
    space = parse_space(SPACE, "s.yml")
    for params in _sample(space):
        assert params["gpu"] == -1
        assert 1e-4 <= params["lr"] <= 0.1 and 0.0 <= params["dropout"] <= 0.5
        assert 16 <= params["unit"] <= 512 and 5 <= params["epoch"] <= 20
        assert params["batchsize"] in range(64, 513, 64)
        assert params["seed"] in (0.1, 0.2, 0.3, 0.4), "interval values stay exact decimals"
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("beta1" in params) == (params["optimizer"] == "adam")
        assert list(params)[:8] == ["gpu", "lr", "dropout", "unit", "epoch", "batchsize", "activation", "seed"]


def test_describe_names_each_distribution_and_the_choice_a_parameter_depends_on():
    lines = parse_space(SPACE, "s.yml").describe()
    text = "\n".join(lines)
    assert "lr" in text and "float in [0.0001, 0.1], log scale" in text
    assert "int in [64, 512], step 64" in text
    assert any("momentum" in line and "only when optimizer=sgd" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "line", "parameter", "words"),
    [
        ("lr: !uniform [1, 0]\n", 1, "lr", "low < high"),
        ("lr: !loguniform [0, 1]\n", 1, "lr", "low > 0"),
        ("lr: !uniform [1]\n", 1, "lr", "[low, high]"),
        ("lr: !uniform [a, 1]\n", 1, "lr", "must be numbers"),
        ("lr: !uniform [.nan, 1]\n", 1, "lr", "finite"),
        ("u: !int [1.5, 4]\n", 1, "u", "integers"),
        ("u: !int [1, 10, 4]\n", 1, "u", "multiple of the step"),
        ("u: !int [1, 10, 0]\n", 1, "u", "at least 1"),
        ("u: !int [0, 10, log]\n", 1, "u", "low >= 1"),
        ("u: !int [1, 10, lug]\n", 1, "u", "step (an integer) or log"),
        ("a: 1\nopt:\n  sgd: 3\n", 3, "opt", "as a mapping"),
        ("opt:\n  sgd:\n    opt: 1\n", 3, "opt", "more than once"),
        ("a: [x, x]\n", 1, "a", "more than once"),
        ("a: !!python/object/apply:os.system [ls]\n", 1, "a", "unsafe tag"),
        ("opt:\n  sgd:\n    m: !!python/name:os.system\n", 3, "m", "unsafe tag"),
        ("opt: {}\n", 1, "opt", "at least one choice"),
    ],
)
def test_a_bad_distribution_is_one_line_naming_file_line_and_parameter(text, line, parameter, words):
    with pytest.raises(GridError) as caught:
        parse_space(text, "space.yml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"space.yml:{line}: parameter '{parameter}'"), message
    assert words in message


@pytest.mark.parametrize("tag", ["!uniform [0, 1]", "!loguniform [1, 2]", "!int [1, 4]"])
def test_a_distribution_in_a_grid_says_to_search_it(tag):
    with pytest.raises(GridError, match=r"grid.yml:2: parameter 'b': .*search it with --trials N --metric NAME"):
        parse_grid(f"a: 1\nb: {tag}\n", "grid.yml")


def test_a_conditional_mapping_in_a_grid_says_to_add_search():
    with pytest.raises(GridError, match="conditional search parameter: search it with --trials N"):
        parse_grid("opt:\n  sgd: {}\n", "grid.yml")


def test_a_grid_file_reads_the_same_as_a_space_of_choices(tmp_path):
    text = "a: [1, 2]\nb: !!python/tuple [0, 3]\nc: x\n"
    space = parse_space(text)
    assert [d.kind for d in space.dimensions] == [CATEGORICAL, INTERVAL, FIXED]
    grid_file, space_file = tmp_path / "g.yml", tmp_path / "s.yml"
    grid_file.write_text(text)
    space_file.write_text(SPACE)
    assert not is_search_space(grid_file) and is_search_space(space_file)


def test_hostile_yaml_is_refused_without_being_built():
    bombs = [
        "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",  # nested lists are not values
        "a: !!python/object/new:os.system [echo pwned]\n",
        "opt:\n  sgd: !!python/object/apply:os.system [echo pwned]\n",
        "!!python/object/apply:os.system [echo]\n",
        "a:\n" + "".join(f"{chr(32) * 2 * i}x{i}:\n" for i in range(1, 100)),  # nested too deep
        "{" * 5000,
    ]
    for text in bombs:
        with pytest.raises(GridError):
            parse_space(text, "evil.yml")


def test_the_grid_sampler_lists_discrete_spaces_only():
    space = parse_space("a: [1, 2]\nb: !int [0, 4, 2]\nc: !!python/tuple [0, 3]\n")
    assert space.grid_space() == {"a": [1, 2], "b": [0, 2, 4], "c#": [0, 1, 2]}
    with pytest.raises(GridError, match="parameter 'x': --search grid cannot list !uniform"):
        parse_space("x: !uniform [0, 1]\n").grid_space()


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(-1e6, 1e6, allow_nan=False),
    width=st.floats(1e-3, 1e6, allow_nan=False),
    ilow=st.integers(-1000, 1000),
    isteps=st.integers(0, 50),
    step=st.integers(1, 7),
    seed=st.integers(0, 1000),
)
def test_property_samples_always_lie_in_the_written_bounds(low, width, ilow, isteps, step, seed):
    high = low + width
    ihigh = ilow + isteps * step
    space = parse_space(f"f: !uniform [{low!r}, {high!r}]\ni: !int [{ilow}, {ihigh}, {step}]\n")
    for params in _sample(space, seed, 5):
        assert low <= params["f"] <= high
        assert ilow <= params["i"] <= ihigh and (params["i"] - ilow) % step == 0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_property_any_text_parses_or_is_one_grid_error_line(text):
    try:
        parse_space(text, "fuzz.yml")
    except GridError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.yml")


def test_float_bounds_written_without_a_dot_are_numbers_as_people_mean_them():
    # YAML 1.1 reads 1e-5 (no dot) as a string; a distribution's bound can only mean the number.
    (lr,) = parse_space("lr: !loguniform [1e-5, 1e-1]\n").dimensions
    assert (lr.low, lr.high) == (1e-5, 0.1)
    with pytest.raises(GridError, match="bounds must be numbers"):
        parse_space("lr: !loguniform ['1e-5', 1]\n")
