"""The "bring your own script" samples (projects/byo_*), each swept as a user would: real embedded workers.

Each sample is a script in a style people already have, run unmodified by a ``command_task``:
argparse with Keras-style progress bars, a small-GPT configurator with ``literal_eval``
overrides and a checkpoint per trial, a Hydra app printing Hugging Face-style dicts, and a
PyTorch script that only logs to TensorBoard; and one with no tasks.py at all, its command
given in parameters.yml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _sweep(project: str, metric: str, tmp_path: Path) -> tuple[list[dict], str]:
    options = ["--local", "--workers", "2", "--metric", metric, "--results", str(tmp_path / "res")]
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(REPO / "projects" / project), *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert records and all(r["status"] == "SUCCESS" for r in records)
    return records, result.stdout


def _steps(record: dict, metric: str) -> list[float]:
    return [point["step"] for point in record["history"] if metric in point["values"]]


def test_a_configurator_script_gets_booleans_and_keeps_a_checkpoint_per_trial(tmp_path):
    records, out = _sweep("byo_configurator", "val loss", tmp_path)

    assert "ranked by val loss (min)" in out
    for record in records:
        assert "--compile=False" in record["command"], "a false value reaches the script"
        assert _steps(record, "val loss") == [0, 10, 20, 30, 40]
        assert not {"gradient_accumulation_steps", "batch_size", "be"} & set(record["metrics"]), record["metrics"]
    checkpoints = sorted((tmp_path / "res").glob("*/work/t*/out/ckpt.pt"))
    assert len(checkpoints) == len(records) == 3, "every trial keeps its own checkpoint"
    assert not (REPO / "projects" / "byo_configurator" / "out").exists(), "nothing written into the project"
    best = min(records, key=lambda r: r["metrics"]["val loss"])
    assert best["params"]["learning_rate"] == 4.0


def test_an_argparse_script_with_keras_progress_bars(tmp_path):
    records, out = _sweep("byo_argparse", "val_accuracy", tmp_path)

    assert len(records) == 8 and "ranked by val_accuracy (max)" in out
    commands = {record["command"].split("train.py", 1)[1] for record in records}
    assert " --lr 0.5 --epochs 5 --batch-size 32 --no-shuffle" in commands
    for record in records:
        assert _steps(record, "val_accuracy") == [1, 2, 3, 4, 5], "one record per epoch, the bar's last state"
        assert 0.5 < record["metrics"]["val_accuracy"] <= 1.0


def test_a_hydra_app_gets_overrides_and_its_printed_dicts_are_metrics(tmp_path):
    records, out = _sweep("byo_hydra", "eval_accuracy", tmp_path)

    assert len(records) == 4 and "ranked by eval_accuracy (max)" in out
    for record in records:
        assert "+trainer.label_smoothing=0.1" in record["command"] and "optim.lr=" in record["command"]
        assert _steps(record, "eval_accuracy") == [1.0, 2.0, 3.0, 4.0]
        assert "epoch" not in record["metrics"], "the epoch is the step, not a metric"
    log = next((tmp_path / "res").glob("*/logs/t0000.log")).read_text()
    assert "label_smoothing: 0.1" in log, "Hydra took the key new to its config"


def test_a_script_that_logs_only_to_tensorboard(tmp_path):
    records, out = _sweep("byo_tensorboard", "Accuracy/val", tmp_path)

    assert len(records) == 4 and "ranked by Accuracy/val (max)" in out
    for record in records:
        assert set(record["metrics"]) >= {"Accuracy/val", "Loss/val", "Loss/train"}, record["metrics"]
        assert _steps(record, "Accuracy/val") == [0, 1, 2, 3]


def test_a_project_with_no_tasks_py_gives_its_command_in_parameters_yml(tmp_path):
    assert not (REPO / "projects" / "byo_command" / "tasks.py").exists()
    records, out = _sweep("byo_command", "val_loss", tmp_path)

    assert len(records) == 4 and "ranked by val_loss (min)" in out
    for record in records:
        augment = record["params"]["augment"]
        assert record["command"].startswith(f"{sys.executable} train.py --lr=")
        assert f"--augment={augment} --out_dir=" in record["command"], "a false value reaches str2bool as False"
        assert _steps(record, "val_loss") == [1, 2, 3, 4, 5]
        model_file = next((tmp_path / "res").glob(f"*/work/{record['trial']}/out/model.json"))
        model = json.loads(model_file.read_text())
        assert model["augment"] is augment and model["lr"] == record["params"]["lr"]
    assert not (REPO / "projects" / "byo_command" / "out").exists(), "nothing written into the project"
