"""Printed metrics read by line shape: the same values as reading every line, and none missed after 2,000 records."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlframework.sweep.trials import scalars
from mlframework.sweep.trials.scalars import MAX_HISTORY, ScalarReader


def every_line_read(groups: Sequence[Sequence[str]], **options) -> ScalarReader:
    """What reading every line with the patterns gives (no shapes, no bound on what is read)."""
    reader = ScalarReader(None, **options)
    reader.steps_printed = set()  # type: ignore[attr-defined]
    for lines in groups:
        found = reader._scan(lines)
        for number in sorted(found):
            reader._add(found[number], lines[number])
            reader.steps_printed.add(reader._step)  # type: ignore[attr-defined]
    reader.close()
    return reader


def read_as_printed(groups: Sequence[Sequence[str]], **options) -> ScalarReader:
    reader = ScalarReader(None, **options)
    reader.live = True
    for lines in groups:
        reader.feed(lines)
    reader.close()
    return reader


def chatty(lines: int, start: int = 0) -> list[str]:
    return [f"step {i}: loss={1 / (i + 1):.6f}" for i in range(start, start + lines)]


def past_the_history(extra: list[str], at: int) -> list[list[str]]:
    """2,100 records in groups of 100, then a group of 100 with ``extra`` at line ``at``."""
    groups = [chatty(100, start) for start in range(0, MAX_HISTORY + 100, 100)]
    last = chatty(100, MAX_HISTORY + 100)
    return [*groups, last[:at] + extra + last[at:]]


def test_a_metric_printed_once_among_many_lines_after_2000_records_is_read():
    reader = read_as_printed(past_the_history(["val loss 0.25", "test accuracy: 0.91"], at=10))
    assert reader.final["val loss"] == 0.25 and reader.final["test accuracy"] == 0.91
    assert reader.final["loss"] == round(1 / (MAX_HISTORY + 200), 6), "the last line's"
    assert len(reader.history) <= MAX_HISTORY + 1, "the record's history stays bounded"


def test_a_rare_metric_after_2000_records_reaches_a_live_taker_at_its_step():
    reader = ScalarReader(None)
    reader.live = True
    for lines in past_the_history(["val loss 0.25"], at=10):
        reader.feed(lines)
    taken = reader.take_settled(quiet=0.0)
    (record,) = [r for r in taken if "val loss" in r["values"]]
    assert record["step"] == MAX_HISTORY + 109, "the step of the line before it"


def test_names_with_digits_are_each_read_after_2000_records():
    groups = past_the_history(["top1 acc: 0.5", "top5 acc: 0.9", "rouge2: 0.3", "rouge1: 0.4"], at=5)
    assert read_as_printed(groups).final == every_line_read(groups).final
    assert read_as_printed(groups).final["top1 acc"] == 0.5


@pytest.mark.parametrize("width", [1, 3])
def test_the_latest_value_of_each_shape_wins_whatever_its_width(width):
    groups = past_the_history([f"val loss {0.5:.{width}f}", "val loss 12.25", "val loss 3"], at=20)
    reader = read_as_printed(groups)
    assert reader.final["val loss"] == 3 and isinstance(reader.final["val loss"], int)


def test_steps_and_configuration_echoes_read_by_shape_as_line_by_line(monkeypatch):
    monkeypatch.setattr(scalars, "MAX_HISTORY", 0)  # every group read by shape from the first
    groups = [
        ["batch_size = 64", "step 1: loss 0.5", "lr_decay = 3", "step 2: loss 0.4"],
        ["iter 10: loss 0.3", "step 11: train loss 0.2", "iter 12: loss 0.25", "val loss 0.5", "iter 13: loss 0.1"],
    ]
    reader = read_as_printed(groups)
    assert reader.final == every_line_read(groups).final
    assert "lr_decay" in reader.final and "batch_size" not in reader.final, "printed after the first step: a value"
    taken = [(r["step"], r["values"]) for r in reader.take_settled(quiet=0.0)]
    assert [step for step, values in taken if "val loss" in values] == [12], "the latest step-bearing line's before it"


# Random output: names, separators and numbers of every form the reader knows, mixed with text.
NAMES = [
    "loss",
    "val loss",
    "val_loss",
    "Val-Loss",
    "train loss",
    "acc",
    "accuracy",
    "top1 acc",
    "top5 acc",
    "f1",
    "rouge2",
    "lr",
    "mfu",
    "time",
    "step",
    "Epoch",
    "iter",
    "global_step",
    "'eval_loss'",
    "'epoch'",
    "gradient_accumulation_steps",
    "batch_size",
    "x",
]
NUMBERS = st.one_of(
    st.integers(-5, 120_000).map(str),
    st.floats(-10, 10, allow_nan=False).map(lambda f: f"{f:.{abs(int(f * 7)) % 7}f}"),
    st.floats(1e-9, 1e6).map(repr),
    st.sampled_from(["1e-05", "3.2E+4", "1.2.3", "12:30", "12,288", "93/100", "48.21ms", "2024-01-05", ".5", "7."]),
)
TOKEN = st.one_of(
    st.tuples(st.sampled_from(NAMES), st.sampled_from([": ", "=", " ", " = ", ":"]), NUMBERS).map("".join),
    st.sampled_from(["saving checkpoint", "|", "-", "{", "}", "ETA: 0s", "[==>...]", "it/s", "version"]),
    st.tuples(st.integers(0, 12), st.integers(1, 12)).map(lambda t: f"{t[0]}/{t[1]} [====>....]"),
    NUMBERS,
)
LINE = st.one_of(
    st.lists(TOKEN, min_size=0, max_size=4).map(lambda tokens: ", ".join(tokens)),
    st.lists(TOKEN, min_size=1, max_size=4).map(lambda tokens: " - ".join(tokens)),
    st.sampled_from(
        [
            '  File "/home/me/train.py", line 12, in <module>',
            "/home/me/cli.py:9: UserWarning: version_base=1.1",
            "Traceback (most recent call last):",
            "",
            "\r3/10 [=====>....] - loss: 0.9000",
            "caf\u00e9 loss=0.5",
        ]
    ),
)


FEW_NAMES = ["loss", "val loss", "top1 acc", "top5 acc", "step", "Epoch", "batch_size", "mfu"]  # names that collide
PART = st.one_of(
    st.tuples(st.sampled_from(FEW_NAMES).map(lambda name: f"{name} "), st.just(True)),
    st.tuples(st.tuples(st.sampled_from(NAMES), st.sampled_from([": ", "=", " ", " = "])).map("".join), st.just(True)),
    st.tuples(st.sampled_from(["", "Epoch", "saving checkpoint", "ETA:", "[==>...]", "it/s", "|"]), st.booleans()),
    st.tuples(LINE, st.just(False)),
)


@st.composite
def output(draw) -> list[list[str]]:
    """Groups of lines from a few templates, each line with numbers of its own: shapes recur, as in real output."""
    templates = draw(st.lists(st.lists(PART, min_size=1, max_size=4), min_size=1, max_size=5))
    groups = []
    for _ in range(draw(st.integers(1, 8))):
        lines = []
        for _ in range(draw(st.integers(1, 12))):
            parts = draw(st.sampled_from(templates))
            lines.append(", ".join(text + (draw(NUMBERS) if number else "") for text, number in parts))
        groups.append(lines)
    return groups


OUTPUT = st.one_of(st.lists(st.lists(LINE, min_size=1, max_size=12), min_size=1, max_size=8), output())


def values(reader: ScalarReader) -> list[tuple]:
    return [(record["step"], record["values"]) for record in reader.history]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    OUTPUT,
    st.sampled_from([(), ("val loss",), ("mfu", "top1 acc")]),
    st.sampled_from([{}, {"lr": 0.1}]),
    st.sampled_from([1_024, 2]),
)
def test_reading_by_shape_gives_what_reading_every_line_gives(groups, wanted, exclude, remembered):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scalars, "_SHAPES", remembered)  # 2: the shapes are forgotten and read again
        by_shape = read_as_printed(groups, wanted=wanted, exclude=exclude)
    assert values(by_shape) == values(every_line_read(groups, wanted=wanted, exclude=exclude))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    OUTPUT,
    st.sampled_from([(), ("val loss",), ("mfu", "top1 acc")]),
    st.sampled_from([{}, {"lr": 0.1}]),
    st.sampled_from([0, 3]),
)
def test_past_the_history_bound_the_final_values_and_step_are_those_of_every_line(groups, wanted, exclude, bound):
    full = every_line_read(groups, wanted=wanted, exclude=exclude)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scalars, "MAX_HISTORY", bound)  # 0: every group read by shape from the first
        bounded = read_as_printed(groups, wanted=wanted, exclude=exclude)
    assert bounded.final == full.final
    assert bounded._step == full._step and bounded._stepped == full._stepped
    if not all(step in full.steps_printed for step, _ in values(full)):
        return  # steps that are counts of records: past the bound, they are not counted
    # Each record handed on holds values that lines at its step printed.
    printed: dict = {}
    for record in values(full):
        printed.setdefault(record[0], []).append(record[1])
    for step, record in values(bounded):
        for name, value in record.items():
            assert any(value == line.get(name) for line in printed.get(step, [])), (step, name, value)
