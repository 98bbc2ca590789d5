"""parameters.yml -> combinations: order, exact intervals, laziness, safe loading, one-line errors."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlframework.exceptions import GridError, MLFrameworkError
from mlframework.sweep.params.arguments import format_value, render_options
from mlframework.sweep.params.grid import Grid, Interval, Parameter
from mlframework.sweep.params.grid_file import grid_from_mapping, load_grid, parse_grid

SEED_GRID = "gpu: -1\nbatchsize: [100, 500]\nepoch: !!python/tuple [5,20,5]\n"


def values(text: str) -> list:
    """The values of the single parameter ``x`` in ``text``."""
    return [combo["x"] for combo in parse_grid(text)]


# --------------------------------------------------------------------------- the seed grid and order


def test_seed_grid_gives_six_combinations_first_parameter_slowest(tmp_path: Path) -> None:
    path = tmp_path / "parameters.yml"
    path.write_text(SEED_GRID)
    grid = load_grid(path)
    assert grid.source == str(path) and grid.names == ["gpu", "batchsize", "epoch"]
    assert [" ".join(render_options(c)) for c in grid] == [
        "--gpu=-1 --batchsize=100 --epoch=5",
        "--gpu=-1 --batchsize=100 --epoch=10",
        "--gpu=-1 --batchsize=100 --epoch=15",
        "--gpu=-1 --batchsize=500 --epoch=5",
        "--gpu=-1 --batchsize=500 --epoch=10",
        "--gpu=-1 --batchsize=500 --epoch=15",
    ]
    assert grid.count == len(grid) == 6
    assert grid[0] == {"gpu": -1, "batchsize": 100, "epoch": 5}  # typed values, as JSON shows them
    assert grid[-1] == {"gpu": -1, "batchsize": 500, "epoch": 15}


def test_load_grid_accepts_a_str_path_and_keeps_it_as_source(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("a: 1\n")
    assert load_grid(str(path)).source == str(path)
    assert parse_grid("a: 1\n").source == "<string>"


def test_the_sample_projects_grids_load() -> None:
    root = Path(__file__).resolve().parents[2] / "projects"
    grids = {p.parent.name: load_grid(p) for p in root.glob("*/parameters.yml")}
    assert {name: grid.count for name, grid in grids.items()} == {
        "mnist": 12,
        "sklearn_digits": 6,
        "byo_argparse": 8,
        "byo_configurator": 3,
        "byo_hydra": 4,
        "byo_tensorboard": 4,
        "byo_command": 4,
    }


def test_a_grid_without_parameters_has_one_empty_combination() -> None:
    grid = parse_grid("{}\n")
    assert grid.count == 1 and list(grid) == [{}] and grid[0] == {} and render_options(grid[0]) == []


def test_indexing_out_of_range_is_an_index_error() -> None:
    grid = parse_grid(SEED_GRID)
    with pytest.raises(IndexError):
        grid[6]
    with pytest.raises(IndexError):
        grid[-7]
    assert list(grid.iter_from(6)) == [] and list(grid.iter_from(-2)) == list(grid)[-2:]


# --------------------------------------------------------------------------- intervals


def test_float_interval_comes_out_as_written() -> None:
    assert values("x: !!python/tuple [0.1, 0.5, 0.1]") == [0.1, 0.2, 0.3, 0.4]
    assert [format_value(v) for v in values("x: !!python/tuple [0.1, 0.5, 0.1]")] == ["0.1", "0.2", "0.3", "0.4"]
    assert values("x: !!python/tuple [0.0, 0.35, 0.1]") == [0.0, 0.1, 0.2, 0.3]
    assert render_options(parse_grid("x: !!python/tuple [0.0, 0.35, 0.1]")[3]) == ["--x=0.3"]


def test_negative_step_counts_down_and_step_defaults_to_one() -> None:
    assert values("x: !!python/tuple [10, 0, -3]") == [10, 7, 4, 1]
    assert values("x: !!python/tuple [0.5, 0.0, -0.25]") == [0.5, 0.25]
    assert values("x: !!python/tuple [3, 7]") == [3, 4, 5, 6]
    assert values("x: !!python/tuple [-2, 1]") == [-2, -1, 0]


def test_int_intervals_give_ints_and_a_float_bound_gives_floats() -> None:
    assert all(type(v) is int for v in values("x: !!python/tuple [5, 20, 5]"))
    assert values("x: !!python/tuple [0, 2.0]") == [0.0, 1.0]
    assert all(type(v) is float for v in values("x: !!python/tuple [0, 2.0]"))
    assert render_options({"x": values("x: !!python/tuple [0, 2.0]")[1]}) == ["--x=1.0"]


def test_small_float_steps_render_without_drift() -> None:
    rendered = [format_value(v) for v in values("x: !!python/tuple [0.001, 0.0051, 0.001]")]
    assert rendered == ["0.001", "0.002", "0.003", "0.004", "0.005"]


decimals = st.decimals(min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False)
steps = st.decimals(min_value=Decimal("0.001"), max_value=100, places=3)


@given(start=decimals, step=steps, count=st.integers(1, 40), negative=st.booleans(), slack=st.integers(0, 999))
def test_interval_has_the_expected_count_and_exact_values(start, step, count, negative, slack) -> None:
    """end lies anywhere in (start+(count-1)*step, start+count*step]: exactly ``count`` exact values."""
    if negative:
        step = -step
    end = start + (count - 1) * step + step * (slack + 1) / 1000
    text = f"x: !!python/tuple [{start:f}, {end:f}, {step:f}]"
    got = values(text)
    assert len(got) == count == len(parse_grid(text).parameters[0].values)
    for i, value in enumerate(got):
        assert Decimal(repr(value)) == start + i * step  # no float drift: the decimal as written
        assert (value < float(end)) if step > 0 else (value > float(end))


@given(start=st.integers(-2000, 2000), end=st.integers(-2000, 2000), step=st.integers(-50, 50).filter(bool))
def test_int_interval_is_python_range(start, end, step) -> None:
    expected = list(range(start, end, step))
    if not expected:
        with pytest.raises(GridError, match="yields no values"):
            parse_grid(f"x: !!python/tuple [{start}, {end}, {step}]")
    else:
        assert values(f"x: !!python/tuple [{start}, {end}, {step}]") == expected


def test_an_interval_is_lazy_and_indexable() -> None:
    interval = parse_grid("x: !!python/tuple [0, 10000000]").parameters[0].values
    assert isinstance(interval, Interval) and len(interval) == 10**7
    assert interval[-1] == 9999999 and interval[1234567] == 1234567
    with pytest.raises(IndexError):
        interval[10**7]


# --------------------------------------------------------------------------- scalars and rendering


def test_bools_are_bare_flags_or_left_out() -> None:
    grid = parse_grid("verbose: true\nquiet: false\nmode: [true, false]\n")
    assert [render_options(c) for c in grid] == [["--verbose", "--mode"], ["--verbose"]]


def test_strings_are_one_argv_element_each_never_shell_quoted() -> None:
    grid = parse_grid("name: 'two words'\nq: \"it's \\\"quoted\\\"\"\nempty: ''\nd: 2020-01-01\n")
    assert render_options(grid[0]) == ["--name=two words", '--q=it\'s "quoted"', "--empty=", "--d=2020-01-01"]


def test_numbers_render_as_written() -> None:
    grid = parse_grid("lr: 0.001\ntiny: 1.0e-5\nsci: 1e-05\nn: 1_000\nneg: -1\nfl: [1.5, 2.0]\n")
    assert render_options(grid[0]) == ["--lr=0.001", "--tiny=1e-05", "--sci=1e-05", "--n=1000", "--neg=-1", "--fl=1.5"]
    assert type(grid[0]["lr"]) is float and type(grid[0]["n"]) is int


def test_format_value() -> None:
    shown = [format_value(v) for v in (1, 0.1, True, False, "a b", 1e-05)]
    assert shown == ["1", "0.1", "true", "false", "a b", "1e-05"]


# --------------------------------------------------------------------------- grid arithmetic (hypothesis)

small_lists = st.lists(st.integers(-5, 5), min_size=1, max_size=4).map(lambda xs: f"[{', '.join(map(str, xs))}]")
small_intervals = st.tuples(st.integers(-5, 5), st.integers(1, 4), st.integers(1, 3)).map(
    lambda t: f"!!python/tuple [{t[0]}, {t[0] + t[1] * t[2]}, {t[2]}]"
)
small_values = st.one_of(st.integers(-9, 9).map(str), small_lists, small_intervals)
small_grids = st.lists(small_values, max_size=4).map(
    lambda vs: "".join(f"p{i}: {v}\n" for i, v in enumerate(vs)) or "{}\n"
)


@given(small_grids)
def test_count_is_the_product_of_sizes_and_order_is_itertools_product(text: str) -> None:
    grid = parse_grid(text)
    columns = [list(p.values) for p in grid.parameters]
    assert grid.count == math.prod(len(c) for c in columns)
    assert [tuple(c.values()) for c in grid] == list(itertools.product(*columns))


@given(small_grids, st.data())
def test_index_and_iter_from_agree_with_the_full_list(text: str, data: st.DataObject) -> None:
    grid = parse_grid(text)
    everything = list(grid)
    i = data.draw(st.integers(-len(everything), len(everything) - 1))
    k = data.draw(st.integers(-len(everything) - 2, len(everything) + 2))
    assert grid[i] == everything[i]
    assert list(grid.iter_from(k)) == everything[k:]


def test_a_grid_of_10_to_the_12_points_is_counted_indexed_and_started_without_expanding() -> None:
    grid = parse_grid("a: !!python/tuple [0, 1000000]\nb: !!python/tuple [0, 1000000]\nc: [x, y]\n")
    assert grid.count == 2 * 10**12
    assert grid[10**12 - 1] == {"a": 499999, "b": 999999, "c": "y"}
    assert grid[-1] == {"a": 999999, "b": 999999, "c": "y"}
    assert next(iter(grid)) == {"a": 0, "b": 0, "c": "x"}
    assert list(itertools.islice(grid.iter_from(10**12 - 1), 3)) == [
        {"a": 499999, "b": 999999, "c": "y"},
        {"a": 500000, "b": 0, "c": "x"},
        {"a": 500000, "b": 0, "c": "y"},
    ]


def test_count_beyond_sys_maxsize_is_still_computed() -> None:
    grid = parse_grid("".join(f"p{i}: !!python/tuple [0, 1000000]\n" for i in range(4)))
    assert grid.count == 10**24 and bool(grid)
    assert grid[-1] == {f"p{i}": 999999 for i in range(4)}


# --------------------------------------------------------------------------- grid_from_mapping


def test_grid_from_mapping_has_the_same_rules() -> None:
    grid = grid_from_mapping({"lr": (0.1, 0.5, 0.1), "epoch": (5, 20, 5), "seed": range(2), "v": True, "m": ["a", "b"]})
    assert grid.source == "<mapping>" and grid.count == 4 * 3 * 2 * 2
    assert [c["lr"] for c in grid][:: 3 * 2 * 2] == [0.1, 0.2, 0.3, 0.4]
    assert render_options(grid[-1]) == ["--lr=0.4", "--epoch=15", "--seed=1", "--v", "--m=b"]
    lr = Interval(Decimal("0.1"), Decimal("0.5"), Decimal("0.1"), integers=False)
    assert grid.parameters[0] == Parameter("lr", lr)


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ({"x": (1, 2, 0)}, "step must not be 0"),
        ({"x": (1,)}, "interval is"),
        ({"x": []}, "empty list"),
        ({"x": None}, "no value"),
        ({"x": {"y": 1}}, "nested mappings"),
        ({"x": (True, 3)}, "must be numbers"),
        ({"bad name": 1}, "not a valid option name"),
    ],
)
def test_grid_from_mapping_errors_name_the_parameter(mapping, problem) -> None:
    with pytest.raises(GridError, match=problem) as caught:
        grid_from_mapping(mapping, source="nb")
    assert str(caught.value).startswith("nb: ") and repr(next(iter(mapping)))[1:-1] in str(caught.value)


# --------------------------------------------------------------------------- safe loading


@pytest.mark.parametrize(
    ("template", "tag"),
    [
        ('x: !!python/object/apply:os.system ["touch {target}"]\n', "!!python/object/apply:os.system"),
        ('x: [1, !!python/object/apply:os.system ["touch {target}"]]\n', "!!python/object/apply:os.system"),
        ('!!python/object/apply:os.system ["touch {target}"]\n', "!!python/object/apply:os.system"),
        ('? !!python/object/apply:os.system ["touch {target}"]\n: 1\n', "!!python/object/apply:os.system"),
        ('x: !!python/tuple [1, !!python/object/apply:os.system ["touch {target}"]]\n', "!!python/object/apply"),
        ("x: !!python/name:os.system ''\n", "!!python/name:os.system"),
        ("x: !!python/object/new:subprocess.Popen [[touch, {target}]]\n", "!!python/object/new:subprocess.Popen"),
        ("x: !!python/list [1]\n", "!!python/list"),
        ("x: !!python/module:os ''\n", "!!python/module:os"),
    ],
)
def test_unsafe_tags_are_rejected_by_name_and_never_run(tmp_path: Path, template: str, tag: str) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "p.yml"
    path.write_text(template.format(target=target))
    with pytest.raises(GridError, match="unsafe tag") as caught:
        load_grid(path)
    assert tag in str(caught.value) and str(path) in str(caught.value)
    assert not target.exists()


# --------------------------------------------------------------------------- one-line errors


@pytest.mark.parametrize(
    ("text", "line", "name", "problem"),
    [
        ("a: 1\nepoch: !!python/tuple [5, 20, 0]\n", 2, "epoch", "step must not be 0"),
        ("a: 1\n\nepoch: !!python/tuple [5, 20, 1, 2]\n", 3, "epoch", "found 4 value(s)"),
        ("epoch: !!python/tuple [5]\n", 1, "epoch", "found 1 value(s)"),
        ("epoch: !!python/tuple [1, true]\n", 1, "epoch", "must be numbers"),
        ("epoch: !!python/tuple [1, '5']\n", 1, "epoch", "must be numbers"),
        ("epoch: !!python/tuple [5, 5]\n", 1, "epoch", "yields no values"),
        ("epoch: !!python/tuple [5, 1, 1]\n", 1, "epoch", "yields no values"),
        ("epoch: !!python/tuple [.inf, 1]\n", 1, "epoch", "finite"),
        ("a: 1\nbatchsize: []\n", 2, "batchsize", "empty list"),
        ("a: 1\nlr: ~\n", 2, "lr", "no value"),
        ("a: 1\nlr: null\n", 2, "lr", "no value"),
        ("opt:\n  lr: 0.1\n", 2, "opt", "nested mappings"),
        ("xs:\n  - 1\n  - [2, [3]]\n", 3, "xs", "single values"),
        ("xs:\n  - 1\n  - {a: 2}\n", 3, "xs", "single values"),
        ("a: 1\nb: 2\na: 3\n", 3, "a", "more than once"),
        ("n: !!int twelve\n", 1, "n", "not a valid !!int"),
        ("n: !custom 1\n", 1, "n", "unsupported tag !custom"),
        ("n: !!binary aGk=\n", 1, "n", "unsupported tag !!binary"),
    ],
)
def test_bad_parameter_is_one_line_with_source_line_and_name(text, line, name, problem) -> None:
    with pytest.raises(GridError) as caught:
        parse_grid(text, source="grid.yml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"grid.yml:{line}: parameter '{name}': ") and problem in message


@pytest.mark.parametrize(
    ("text", "prefix", "problem"),
    [
        ("", "grid.yml: ", "empty file"),
        ("# only a comment\n", "grid.yml: ", "empty file"),
        ("- 1\n- 2\n", "grid.yml:1: ", "expected a mapping"),
        ("just text\n", "grid.yml:1: ", "expected a mapping"),
        ("a: 1\nb: [1, 2\n", "grid.yml:3: ", "YAML syntax error"),
        ("a: 1\n  b: 2\n", "grid.yml:2: ", "YAML syntax error"),
        ("a: 1\n---\nb: 2\n", "grid.yml:2: ", "single document"),
        ("a: 1\n1: 2\n", "grid.yml:2: ", "names must be strings"),
        ("a: 1\ntrue: 2\n", "grid.yml:2: ", "names must be strings"),
        ("a: 1\n'--lr': 2\n", "grid.yml:2: ", "'--lr' is not a valid option name"),
        ("'a b': 2\n", "grid.yml:1: ", "'a b' is not a valid option name"),
        ("'a\\nb': 2\n", "grid.yml:1: ", "is not a valid option name"),
    ],
)
def test_bad_file_is_one_line_with_source_and_line(text, prefix, problem) -> None:
    with pytest.raises(GridError) as caught:
        parse_grid(text, source="grid.yml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(prefix) and problem in message


def test_missing_file_and_directory_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GridError, match=r"nope\.yml: file not found$"):
        load_grid(tmp_path / "nope.yml")
    with pytest.raises(GridError, match="is a directory"):
        load_grid(tmp_path)


def test_undecodable_file_is_a_grid_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_bytes(b"a: \xff\xfe\xfd\n")
    with pytest.raises(GridError) as caught:
        load_grid(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_grid_error_is_a_user_error() -> None:
    with pytest.raises(MLFrameworkError):
        parse_grid("a: []")


def test_a_grid_rejects_duplicate_parameters_built_by_hand() -> None:
    with pytest.raises(GridError, match="more than once"):
        Grid((Parameter("a", (1,)), Parameter("a", (2,))), "hand")


# --------------------------------------------------------------------------- fuzzing


def _parse_or_grid_error(text: str) -> None:
    try:
        grid = parse_grid(text, source="fuzz.yml")
    except GridError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.yml")
    else:
        assert grid.count >= 1
        for combo in itertools.islice(grid, 3):
            render_options(combo)


@given(st.text())
def test_arbitrary_text_gives_a_grid_or_a_grid_error(text: str) -> None:
    _parse_or_grid_error(text)


YAML_PIECES = [
    "a",
    "b",
    "x_1",
    ": ",
    ":",
    "-",
    " ",
    "  ",
    "\n",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "'",
    '"',
    "#",
    "&a ",
    "*a",
    "? ",
    "!!python/tuple ",
    "!!python/object/apply:os.system ",
    "!!python/name:os.system ",
    "!!int ",
    "!!float ",
    "!!str ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!custom ",
    "~",
    "null",
    "true",
    "no",
    "0",
    "-1",
    "1.5",
    ".inf",
    ".nan",
    "1e5",
    "0x_",
    "1:30",
    "2020-01-01",
    "0.1",
    "---",
    "...",
    "|",
    ">",
    "<<",
    "%YAML 1.1",
    "\t",
    "\\0",
]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join))
def test_yaml_shaped_text_gives_a_grid_or_a_grid_error(text: str) -> None:
    _parse_or_grid_error(text)
