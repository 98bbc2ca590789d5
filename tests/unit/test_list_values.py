"""List values in a grid: ``layers: [[64, 64], [128]]`` (params, arguments, space), old files unchanged."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlframework.exceptions import GridError
from mlframework.sweep.params.arguments import ArgumentStyle, display, format_value, render_options
from mlframework.sweep.params.grid_file import grid_from_mapping, parse_grid
from mlframework.sweep.params.space import CATEGORICAL, parse_space

SPREAD = ArgumentStyle(spread_lists=True)


def values(text: str, name: str = "layers") -> list:
    return [combo[name] for combo in parse_grid(text)]


def test_a_list_of_lists_gives_one_trial_per_inner_list() -> None:
    grid = parse_grid("lr: [0.1, 0.2]\nlayers: [[64, 64], [128]]\n")
    assert grid.count == 4
    assert list(grid) == [
        {"lr": 0.1, "layers": [64, 64]},
        {"lr": 0.1, "layers": [128]},
        {"lr": 0.2, "layers": [64, 64]},
        {"lr": 0.2, "layers": [128]},
    ]
    assert SPREAD.render(grid[0]) == ["--lr=0.1", "--layers", "64", "64"]
    assert ArgumentStyle(separate=True, spread_lists=True).render(grid[1]) == ["--lr", "0.1", "--layers", "128"]


def test_a_single_inner_list_is_one_value_and_a_flat_list_keeps_its_seed_meaning() -> None:
    assert values("layers: [[64, 64]]\n") == [[64, 64]]
    assert values("layers: [64, 64]\n") == [64, 64]  # two values, as in the seed
    assert values("layers:\n  - [64, 64]\n  - 128\n") == [[64, 64], 128]  # block style, mixed items
    assert values("layers: [[relu, 0.5, true, '2020-01-01']]\n") == [["relu", 0.5, True, "2020-01-01"]]


def test_without_spread_lists_a_list_value_is_one_json_argument() -> None:
    (combo,) = parse_grid('layers: [[64, 64]]\nacts: [["relu", "tanh"]]\n')
    assert render_options(combo) == ["--layers=[64, 64]", '--acts=["relu", "tanh"]']
    assert ArgumentStyle(separate=True).render(combo) == ["--layers", "[64, 64]", "--acts", '["relu", "tanh"]']
    assert json.loads(format_value(combo["acts"])) == ["relu", "tanh"]
    assert display(render_options(combo)) == "'--layers=[64, 64]' '--acts=[\"relu\", \"tanh\"]'"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("layers: [[]]\n", 1, "empty list as a value"),
        ("layers:\n  - [64]\n  - []\n", 3, "empty list as a value"),
        ("layers: [[1, [2]]]\n", 1, "items of a list value must be single values, found a list"),
        ("layers: [[1, {a: 2}]]\n", 1, "items of a list value must be single values, found a mapping"),
        ("layers: [[1, !!python/tuple [0, 3]]]\n", 1, "found an interval"),
        ("layers: [!!python/tuple [0, 3]]\n", 1, "list items must be single values or lists of them"),
        ("layers: [[1, ~]]\n", 1, "no value"),
        ("layers: [[!uniform [0, 1]]]\n", 1, "must be single values, found a list"),
        ('layers: [[!!python/object/apply:os.system ["true"]]]\n', 1, "unsafe tag"),
    ],
)
def test_a_bad_list_value_is_one_line_naming_the_parameter(text: str, line: int, problem: str) -> None:
    with pytest.raises(GridError) as caught:
        parse_grid(text, source="grid.yml")
    message = str(caught.value)
    assert message.startswith(f"grid.yml:{line}: parameter 'layers': ") and problem in message, message


def test_grid_from_mapping_takes_list_values_the_same_way() -> None:
    grid = grid_from_mapping({"layers": [[64, 64], [128]], "seed": [1]})
    assert list(grid) == [{"layers": [64, 64], "seed": 1}, {"layers": [128], "seed": 1}]
    with pytest.raises(GridError, match="parameter 'layers': empty list as a value"):
        grid_from_mapping({"layers": [[]]})
    with pytest.raises(GridError, match="parameter 'layers': list items must be"):
        grid_from_mapping({"layers": [[1, [2]]]})


def test_a_search_chooses_among_list_values_by_index() -> None:
    space = parse_space("layers: [[64, 64], [128]]\nlr: !uniform [0.1, 0.2]\n")
    (layers, _lr) = space.dimensions
    assert layers.kind == CATEGORICAL and layers.indexed
    assert layers.describe() == "one of [64, 64], [128]"
    assert parse_space("layers: [[64, 64], [128]]\nlr: [0.1, 0.2]\n").grid_space() == {
        "layers#": [0, 1],
        "lr": [0.1, 0.2],
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [space.sample(study.ask())["layers"] for _ in range(20)]
    assert all(value in ([64, 64], [128]) for value in seen) and len({tuple(v) for v in seen}) == 2
    with pytest.raises(GridError, match="listed more than once"):
        parse_space("layers: [[64, 64], [64, 64]]\nlr: !uniform [0.1, 0.2]\n")


# --------------------------------------------------------------------------- properties (hypothesis)

scalars = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, width=64),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=8),
)
list_values = st.lists(scalars, min_size=1, max_size=4)
items = st.one_of(scalars, list_values)
parameter_values = st.one_of(scalars, st.lists(items, min_size=1, max_size=4))
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)


def _same(a: object, b: object) -> bool:
    """Equal with the same types (True is not 1), lists compared item by item."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(names, parameter_values, min_size=1, max_size=4))
def test_property_each_list_item_is_one_value_as_yaml_reads_it(mapping: dict) -> None:
    """Any file of scalars, lists and lists of lists: each top-level list item is one value, as written.

    A file without nested lists therefore reads exactly as it did before list values existed.
    """
    text = yaml.safe_dump(mapping, allow_unicode=True)
    read = yaml.safe_load(text)  # what YAML itself reads (a raw NEL in a string folds, as in any YAML file)
    grid = parse_grid(text)
    for parameter in grid.parameters:
        written = read[parameter.name]
        expected = written if isinstance(written, list) else [written]
        assert _same(list(parameter.values), expected)
    assert grid.count == math.prod(len(v) if isinstance(v, list) else 1 for v in mapping.values())


@settings(max_examples=150, deadline=None)
@given(names, list_values, st.booleans())
def test_property_a_list_value_renders_as_its_items_or_one_json_argument(
    name: str, value: list, separate: bool
) -> None:
    combo = {name: value}
    spread = ArgumentStyle(separate=separate, spread_lists=True).render(combo)
    assert spread == [f"--{name}", *(format_value(item) for item in value)]
    (seed,) = render_options(combo)
    assert seed.startswith(f"--{name}=")
    assert _same(json.loads(seed[len(name) + 3 :]), value)  # reads back exactly (json reads Infinity too)
    assert "\n" not in display([seed, *spread])


def test_a_task_function_s_style_is_what_train_task_gave_it_else_the_seed_s() -> None:
    from mlframework.sweep.params.arguments import SEED_STYLE, STYLE_ATTRIBUTE, style_of

    def plain(trial: object) -> None: ...

    assert style_of(plain) is SEED_STYLE
    setattr(plain, STYLE_ATTRIBUTE, SPREAD)
    assert style_of(plain) is SPREAD
