"""Argument styles: what each kind of script receives for a combination, and the warning for a dropped false."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlframework.sweep.params.arguments import (
    PRESETS,
    SEED_STYLE,
    ArgumentStyle,
    false_warning,
    hydra_value,
    named_style,
)

COMBO = {"lr": 0.1, "layers": [64, 64], "compile": False, "amp": True, "name": "two words", "seed": None}


def test_the_default_style_is_the_seed_s():
    assert named_style("default") == SEED_STYLE == ArgumentStyle()
    assert SEED_STYLE.render(COMBO) == ["--lr=0.1", "--layers=[64, 64]", "--amp", "--name=two words"]


def test_separate_style():
    assert named_style("separate").render({"lr": 0.1, "amp": True, "compile": False}) == ["--lr", "0.1", "--amp"]


def test_booleans_style_passes_false_as_a_value():
    assert named_style("booleans").render(COMBO) == [
        "--lr=0.1",
        "--layers=[64, 64]",
        "--compile=False",
        "--amp=True",
        "--name=two words",
    ]
    assert ArgumentStyle(separate=True, bool_words=("1", "0")).render({"amp": False}) == ["--amp", "0"]


def test_lightning_style_has_dotted_options_and_lowercase_booleans():
    combo = {"trainer.max_epochs": 3, "trainer.fast_dev_run": False, "model.lr": 0.01}
    assert ArgumentStyle.lightning().render(combo) == [
        "--trainer.max_epochs=3",
        "--trainer.fast_dev_run=false",
        "--model.lr=0.01",
    ]


def test_hydra_style_has_no_dashes_and_marks_new_keys_with_a_plus():
    combo = {"a.b": 1, "c": "x", "model.layers": [1, 2, 3], "debug": False, "opt": None, "tag": "two words"}
    assert ArgumentStyle.hydra(new=["c"]).render(combo) == [
        "a.b=1",
        "+c=x",
        "model.layers=[1,2,3]",
        "debug=false",
        "opt=null",
        "tag='two words'",
    ]
    assert named_style("hydra") == ArgumentStyle.hydra()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("adam", "adam"),
        ("a/b-c_d.e", "a/b-c_d.e"),
        ("http://host:80", "http://host:80"),
        ("1", "'1'"),  # would be read as an int
        ("1_000", "'1_000'"),
        ("1e-3", "'1e-3'"),
        ("True", "'True'"),
        ("null", "'null'"),
        ("inf", "'inf'"),
        ("0123", "0123"),  # two tokens, read back as the string
        ("", "''"),
        ("a,b", "'a,b'"),  # a comma would make a multirun sweep
        ("it's", '"it\'s"'),
        ("${x.y}", "'${x.y}'"),
        (1e-05, "1e-05"),
        ([["a b"], []], "[['a b'],[]]"),
    ],
)
def test_hydra_quotes_only_what_needs_quoting(value, shown):
    assert hydra_value(value) == shown


_parser = None


def _hydra_parse(argument: str):
    global _parser
    overrides_parser = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    if _parser is None:
        _parser = overrides_parser.OverridesParser.create()
    return _parser.parse_override(argument)


_scalars = (
    st.text(max_size=12)
    | st.sampled_from(["true", "1", "1.5", "null", "nan", "a b", "x\\", "\\'", "it's", '"q"', "a=b", "[1]", "${a}"])
    | st.integers()
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=10)


@given(value=_values)
def test_hydra_values_round_trip_through_hydra_s_own_parser(value):
    override = _hydra_parse(ArgumentStyle.hydra().render({"model.x": value})[0])
    assert override.key_or_group == "model.x"
    assert override.value() == value


@given(value=_values)
def test_hydra_new_keys_round_trip(value):
    override = _hydra_parse(ArgumentStyle.hydra(new=("c",)).render({"c": value})[0])
    assert override.is_add() and override.value() == value


def test_an_unknown_preset_names_the_presets():
    with pytest.raises(ValueError, match="hydra"):
        named_style("hdyra")
    assert set(PRESETS) == {"default", "separate", "booleans", "hydra", "lightning"}


def test_a_hydra_style_takes_no_dash_options():
    with pytest.raises(ValueError):
        ArgumentStyle(syntax="hydra", negatable=True)
    with pytest.raises(ValueError):
        ArgumentStyle(new=("c",))


def test_a_dropped_false_is_named_with_how_to_pass_it():
    values = {"compile": [True, False], "lr": [0.1], "amp": [False]}
    warning = false_warning(SEED_STYLE, values)
    assert warning is not None and "\n" not in warning
    assert "'compile', 'amp'" in warning and "--compile, --amp out" in warning
    assert 'arguments="booleans" (--compile=False)' in warning and "--no-compile" in warning
    assert false_warning(ArgumentStyle(separate=True), values) is not None


@pytest.mark.parametrize(
    "style", [ArgumentStyle.booleans(), ArgumentStyle.hydra(), ArgumentStyle.lightning(), ArgumentStyle(negatable=True)]
)
def test_styles_that_pass_false_do_not_warn(style):
    assert false_warning(style, {"compile": [False]}) is None


def test_no_false_no_warning():
    assert false_warning(SEED_STYLE, {"compile": [True], "n": [0]}) is None  # 0 is not false
