"""Metrics read from what a script prints: the names as a user gives them, steps, config echoes, ranking guesses."""

from __future__ import annotations

import time

import pytest

from mlframework.sweep.records.ranking import guess_metric, pick_metric, rank
from mlframework.sweep.trials import scalars
from mlframework.sweep.trials.metric_names import find_metric, metric_key, metric_value
from mlframework.sweep.trials.runner import split_output
from mlframework.sweep.trials.scalars import ScalarReader

# What a small public GPT trainer prints (its config echo, start-up lines, evals and iterations).
GPT_TRAINER = """\
Overriding config with config/train_shakespeare_char.py:
# train a miniature character-level shakespeare model
out_dir = 'out-shakespeare-char'
eval_interval = 250 # keep frequent because we'll overfit
gradient_accumulation_steps = 40
batch_size = 64
n_layer = 6
dropout = 0.2
learning_rate = 1e-3 # with baby networks can afford to go a bit higher
max_iters = 5000
Overriding: compile = False
tokens per iteration will be: 12,288
found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)
Initializing a new model from scratch
number of parameters: 10.65M
num decayed parameter tensors: 26, with 10,740,096 parameters
using fused AdamW: False
step 0: train loss 4.2874, val loss 4.2823
iter 0: loss 4.2654, time 29792.66ms, mfu -100.00%
iter 10: loss 3.2100, time 48.21ms, mfu 1.23%
iter 20: loss 2.7712, time 48.90ms, mfu 1.22%
step 50: train loss 2.1034, val loss 2.1577
iter 50: loss 2.1500, time 49.01ms, mfu 1.21%
saving checkpoint to out-shakespeare-char
""".splitlines()

# Hugging Face's Trainer: a start-up banner, then dict lines.
HF_TRAINER = """\
***** Running training *****
  Num examples = 1,000
  Num Epochs = 2
  Instantaneous batch size per device = 8
  Total optimization steps = 250
{'loss': 0.6931, 'grad_norm': 1.23, 'learning_rate': 4.5e-05, 'epoch': 0.5}
{'eval_loss': 0.52, 'eval_accuracy': 0.81, 'eval_runtime': 1.2, 'epoch': 1.0}
{'loss': 0.41, 'grad_norm': 0.9, 'learning_rate': 1.5e-05, 'epoch': 1.5}
{'eval_loss': 0.31, 'eval_accuracy': 0.9, 'eval_runtime': 1.1, 'epoch': 2.0}
{'train_runtime': 12.5, 'train_samples_per_second': 160.0, 'train_loss': 0.55, 'epoch': 2.0}
""".splitlines()


def read(lines: list[str], patterns=None, **options) -> ScalarReader:
    reader = ScalarReader(patterns, **options)
    reader.feed(lines)
    reader.close()
    return reader


def steps(reader: ScalarReader) -> list[tuple]:
    return [(record["step"], record["values"]) for record in reader.history]


@pytest.mark.parametrize(
    "line",
    [
        "val loss 2.15",
        "val_loss: 2.15",
        "val_loss=2.15",
        "VAL-LOSS = 2.15",
        "val loss: 2.15",
        "{'eval_loss': 2.15, 'epoch': 1.0}",
        "{'eval_loss': '2.15', 'epoch': '1.0'}",
        "'eval_loss': 2.15",
        "12/12 [==============================] - 1s 5ms/step - loss: 0.4100 - val_loss: 2.15",
    ],
)
@pytest.mark.parametrize("asked", ["val loss", "val_loss", "Val-Loss"])
def test_a_metric_asked_for_is_read_in_every_printed_form_and_recorded_as_asked(line, asked):
    reader = read([line], wanted=[asked])
    assert reader.final[asked] == 2.15
    assert not {"val_loss", "eval_loss", "val loss"} - {asked} & set(reader.final), "one metric, one name"


def test_a_name_nobody_asked_for_is_read_with_no_pattern_only_in_its_plain_forms():
    assert read(["mfu 1.23%"]).final == {}, "not a metric-like word: needs ':' or '='"
    assert read(["mfu 1.23%"], wanted=["MFU"]).final == {"MFU": 1.23}
    assert read(["tokens per sec 5120"], wanted=["tokens per sec"]).final == {"tokens per sec": 5120}


def test_the_normal_form_of_a_metric_name():
    assert {metric_key(n) for n in ("val loss", "val_loss", "Val-Loss", "eval_loss", " validation  loss")} == {
        "val_loss"
    }
    assert metric_key("train loss") != metric_key("val loss") and metric_key("eval") == "eval"
    assert find_metric(["loss", "val_loss"], "val loss") == "val_loss"
    assert find_metric(["loss"], "val loss") is None
    assert metric_value({"val_loss": 0.3}, "VAL LOSS") == 0.3 and metric_value({"loss": 1}, "acc") is None


def test_the_gpt_trainer_config_echo_is_not_a_metric_and_its_steps_are_steps():
    reader = read(GPT_TRAINER, exclude={"compile"})
    assert set(reader.final) == {"train loss", "val loss", "loss"}, "no config echo, no start-up number, no step"
    assert steps(reader) == [
        (0, {"train loss": 4.2874, "val loss": 4.2823, "loss": 4.2654}),
        (10, {"loss": 3.21}),
        (20, {"loss": 2.7712}),
        (50, {"train loss": 2.1034, "val loss": 2.1577, "loss": 2.15}),
    ]
    assert set(reader.history[0]) == {"time", "step", "values"}, "the shape metrics.log writes"
    asked = read(GPT_TRAINER, wanted=["val_loss"])
    assert asked.final["val_loss"] == 2.1577 and "val loss" not in asked.final


def test_the_gpt_trainer_is_ranked_by_its_validation_loss_not_by_its_config():
    records = [
        {
            "trial": f"t{i}",
            "index": i,
            "status": "SUCCESS",
            "params": {"lr": lr},
            "metrics": r.final,
            "history": r.history,
        }
        for i, (lr, r) in enumerate(
            (lr, read([line.replace("2.1577", str(value)) for line in GPT_TRAINER]))
            for lr, value in ((1e-3, 2.5), (1e-4, 2.0))
        )
    ]
    assert pick_metric(records, None, None) == ("val loss", "min")
    assert [r["trial"] for r in rank(records, "val loss", "min")] == ["t1", "t0"]
    assert pick_metric(records, "val_loss", None) == ("val loss", "min"), "asked in another spelling"


def test_hugging_face_dict_lines_epoch_is_the_step_and_the_banner_is_not_a_metric():
    reader = read(HF_TRAINER, wanted=["val loss"])
    assert "Epochs" not in reader.final and "steps" not in reader.final and "device" not in reader.final
    assert "epoch" not in reader.final
    assert [(s, v.get("val loss")) for s, v in steps(reader)] == [(0.5, None), (1.0, 0.52), (1.5, None), (2.0, 0.31)]
    assert reader.final["val loss"] == 0.31 and reader.final["train_loss"] == 0.55
    assert guess_metric([{"index": 0, "metrics": read(HF_TRAINER).final}]) == "eval_accuracy"


def test_keras_progress_bars_one_record_per_epoch_the_last_redraw_counts():
    def epoch(number: int, losses: list[float], val: float) -> str:
        redraws = [
            f"{i + 1}/4 [{'=' * i}>{'.' * (3 - i)}] - ETA: 0s - loss: {loss:.4f}" for i, loss in enumerate(losses)
        ]
        last = (
            f"4/4 [====] - 1s 5ms/step - loss: {losses[-1]:.4f} - accuracy: 0.8 - val_loss: {val} - val_accuracy: 0.9"
        )
        return f"Epoch {number}/2\n" + "\r".join(redraws) + "\r" + last + "\n"

    output = split_output(epoch(1, [0.9, 0.7, 0.6], 0.5) + epoch(2, [0.5, 0.45, 0.4], 0.35))
    reader = read(output, wanted=["val loss"])
    assert steps(reader) == [
        (1, {"loss": 0.6, "accuracy": 0.8, "val loss": 0.5, "val_accuracy": 0.9}),
        (2, {"loss": 0.4, "accuracy": 0.8, "val loss": 0.35, "val_accuracy": 0.9}),
    ]


def test_tqdm_bars_without_a_step_one_record_per_bar_counted():
    bar = "\r".join(f"{25 * i}%|{'#' * i}| {i}/4 [00:0{i}<00:00, 9.5it/s, loss={1 - i / 10:.2f}]" for i in range(1, 5))
    reader = read(split_output(f"{bar}\n{bar.replace('loss=0.', 'loss=0.0')}\n"))
    assert steps(reader) == [(0, {"loss": 0.6}), (1, {"loss": 0.06})], "without a step: the count of records"


def test_lightning_bar_with_an_epoch_the_epoch_is_the_step():
    lines = [
        "Epoch 0: 100%|##########| 8/8 [00:00<00:00, 40.1it/s, v_num=0, train_loss=0.41, val_loss=0.31]",
        "Epoch 1: 100%|##########| 8/8 [00:00<00:00, 41.7it/s, v_num=0, train_loss=0.30, val_loss=0.25]",
    ]
    reader = read(lines)
    assert [s for s, _ in steps(reader)] == [0, 1] and reader.final["val_loss"] == 0.25


def test_a_named_group_step_or_epoch_is_the_step_not_a_metric():
    reader = read(
        ["ep 3 it 7 loss=0.5", "ep 4 it 9 loss=0.25"],
        [r"ep (?P<epoch>\d+) it (?P<iteration>\d+) loss=(?P<loss>[0-9.]+)"],
    )
    assert reader.final == {"loss": 0.25}
    assert [s for s, _ in steps(reader)] == [7, 9], "the last step key on the line"


def test_lines_after_a_step_line_belong_to_its_step():
    reader = read(["Epoch 3", "loss: 0.5", "accuracy: 0.9", "Epoch 4", "loss: 0.4"])
    assert steps(reader) == [(3, {"loss": 0.5, "accuracy": 0.9}), (4, {"loss": 0.4})]


def test_a_script_with_no_step_keeps_its_plain_values():
    reader = read(["x=3", "result: 5", "accuracy: 0.9"])
    assert reader.final == {"accuracy": 0.9, "x": 3, "result": 5}
    assert steps(reader) == [(0, {"accuracy": 0.9})]


def test_numbers_that_are_not_values_are_not_read():
    reader = read(["version 1.2.3 at 12:30", "date=2024-01-05", "took time=48.21ms", "be: 12,288", "Accuracy: 93/100"])
    assert reader.final == {}


def test_a_guess_never_picks_a_config_echo_or_a_parameter():
    config_echo = {"gradient_accumulation_steps": 40, "batch_size": 64, "lr": 0.1}
    records = [{"index": 0, "params": {"lr": 0.1}, "metrics": config_echo, "history": []}]
    assert guess_metric(records) is None
    series = [{"values": {"kl": 0.5, "seed": 1}}, {"values": {"kl": 0.4, "seed": 1}}]
    records[0]["metrics"] = {"seed": 1, "kl": 0.4}
    records[0]["history"] = series
    assert guess_metric(records) == "kl", "printed as a series"
    records[0]["metrics"] = {"loss": 0.3, "accuracy": 0.7, "val_loss": 0.4, "val_accuracy": 0.6}
    assert guess_metric(records) == "val_accuracy", "held-out data first, accuracy first"
    records[0]["metrics"] = {"score": 6, "loss": 0.1}
    assert guess_metric(records) == "score", "otherwise the first metric-like one"


def test_a_script_that_fails_before_its_first_step_left_only_config_not_metrics():
    reader = ScalarReader(None)
    reader.feed(["batch_size = 64", "n_layer = 6"])
    reader.close(completed=False)
    assert reader.final == {} and reader.history == []


def test_global_step_is_a_step_and_a_step_like_setting_is_not():
    reader = read(["max_step 100", "global_step=10 loss=0.5", "global_step 20 loss 0.4"])
    assert steps(reader) == [(10, {"loss": 0.5}), (20, {"loss": 0.4})] and "max_step" not in reader.final


def test_records_are_handed_on_live_once_each_the_latest_when_it_has_settled(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    reader = ScalarReader(None, wanted=["val loss"])
    reader.live = True
    reader.feed(["step 0: train loss 2.5, val loss 2.6"])
    assert reader.take_settled(quiet=0.25) == [], "the latest record may still grow: not yet"
    clock[0] += 0.3
    (first,) = reader.take_settled(quiet=0.25)
    assert first["step"] == 0 and first["values"] == {"train loss": 2.5, "val loss": 2.6}
    assert reader.take_settled(quiet=0.25) == [], "handed on once"
    reader.feed(["step 10: train loss 2.1, val loss 2.2", "step 20: train loss 1.9, val loss 2.0"])
    assert [r["step"] for r in reader.take_settled(quiet=0.25)] == [10], "closed at once, the latest waits"
    clock[0] += 0.3
    assert [r["step"] for r in reader.take_settled(quiet=0.25)] == [20]
    assert [r["step"] for r in reader.history] == [0, 10, 20], "the history keeps every record"


def test_an_unfinished_progress_bar_is_not_handed_on(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    reader = ScalarReader(None)
    reader.live = True
    reader.feed(["Epoch 1/3", "\r3/10 [=====>....] - loss: 0.9000"])
    clock[0] += 1.0
    assert reader.take_settled(quiet=0.25) == []
    reader.feed(["\r10/10 [==========] - 1s - loss: 0.5000 - val_loss: 0.4500"])
    clock[0] += 1.0
    (record,) = reader.take_settled(quiet=0.25)
    assert record["values"] == {"loss": 0.5, "val_loss": 0.45}


def test_past_the_history_bound_records_still_reach_a_live_taker(monkeypatch):
    monkeypatch.setattr(scalars, "MAX_HISTORY", 3)
    reader = ScalarReader(None)
    reader.live = True
    for step in range(6):
        reader.feed([f"step {step}: loss {1 / (step + 1):.3f}"])
    taken = reader.take_settled(quiet=0.0)
    assert [r["step"] for r in taken] == [0, 1, 2, 3, 4, 5], "a pruner's later rungs still arrive"
    assert len(reader.history) <= 4, "while the record's history stays bounded"


def test_python_warnings_and_tracebacks_are_not_metrics():
    reader = ScalarReader(None)
    reader.feed(
        [
            "/home/me/project/cli.py:9: UserWarning: The version_base parameter is not specified.",
            "Please specify a compatability version level, or None. Will assume defaults for version 1.1",
            '  File "/home/me/project/train.py", line 12, in <module>',
            "epoch 1: val_loss=0.52",
        ]
    )
    reader.close()
    assert reader.final == {"val_loss": 0.52}
