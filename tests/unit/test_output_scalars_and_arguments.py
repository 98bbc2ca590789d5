"""Output patterns, argument styles, durations, one-line display and strict JSON of parameters."""

from __future__ import annotations

import json
import subprocess

import pytest

from mlframework.sweep.params.arguments import ArgumentStyle, display, json_safe
from mlframework.sweep.trials.scalars import ScalarReader
from mlframework.sweep.trials.trial_env import thread_limits


def test_default_patterns_read_name_colon_value_and_name_equals_value():
    reader = ScalarReader(None, exclude={"lr"})
    reader.feed(["Epoch 1/3 - loss: 0.52 - accuracy: 0.81", "step 2 lr=0.1 val_loss=4e-1", "version 1.2.3 at 12:30"])
    assert reader.final == {"loss": 0.52, "accuracy": 0.81, "val_loss": 0.4}
    assert [(h["step"], h["values"]) for h in reader.history] == [
        (1, {"loss": 0.52, "accuracy": 0.81}),
        (2, {"val_loss": 0.4}),
    ], "Epoch/step are the records' steps, lr (a parameter) is left out"


def test_declared_patterns_named_groups_and_a_mapping():
    grouped = ScalarReader([r"step (?P<step>\d+).*loss=(?P<loss>[0-9.e-]+)"])
    grouped.feed(["step 10 of 20 loss=0.25", "nothing here"])
    assert [(h["step"], h["values"]) for h in grouped.history] == [(10, {"loss": 0.25})], "a group step: the step"
    named = ScalarReader({"acc": r"val acc ([0-9.]+)%"})
    named.feed(["val acc 93.5%"])
    assert named.final == {"acc": 93.5}
    off = ScalarReader(False)
    assert not off.active


@pytest.mark.parametrize(
    ("style", "argv"),
    [
        (ArgumentStyle(), ["--lr=0.1", "--layers=[64, 64]", "--aug"]),
        (ArgumentStyle(separate=True), ["--lr", "0.1", "--layers", "[64, 64]", "--aug"]),
        (ArgumentStyle(spread_lists=True, negatable=True), ["--lr=0.1", "--layers", "64", "64", "--aug", "--no-bn"]),
    ],
)
def test_argument_styles(style, argv):
    assert style.render({"lr": 0.1, "layers": [64, 64], "aug": True, "bn": False, "skip": None}) == argv


def test_a_value_with_a_newline_is_shown_on_one_line_and_reads_back_the_same():
    line = display(["--a=x\ny", "--b=it's"])
    assert "\n" not in line
    echoed = subprocess.run(["bash", "-c", f"printf '%s|' {line}"], capture_output=True, text=True).stdout
    assert echoed == "--a=x\ny|--b=it's|"


def test_json_safe_is_strict_json():
    text = json.dumps(json_safe({"a": float("inf"), "b": [float("-inf"), float("nan")], "c": 1.5}), allow_nan=False)
    assert json.loads(text) == {"a": "inf", "b": ["-inf", "nan"], "c": 1.5}


def test_thread_limits_share_the_cpus_and_keep_what_the_user_set(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert thread_limits({"MLFRAMEWORK_SLOTS": "2"}) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert thread_limits({"MLFRAMEWORK_SLOTS": "2", "OMP_NUM_THREADS": "1"}) == {"MKL_NUM_THREADS": "4"}
    assert thread_limits({}) == {}
