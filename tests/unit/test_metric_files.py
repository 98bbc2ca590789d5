"""Metrics from TensorBoard event files and CSV logs a script writes: found under the trial's directory, read as they grow."""

from __future__ import annotations

import pytest

from mlframework.sweep.trials.metric_files import MetricFiles


def test_tensorboard_scalars_are_records_by_step_read_on_as_the_file_grows(tmp_path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    writer = tensorboard.SummaryWriter(log_dir=str(tmp_path / "runs" / "exp1"))
    files = MetricFiles(tmp_path, look_every=0)
    assert files.poll() == []

    for step in range(3):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalar("val/accuracy", 0.5 + step / 10, step)
    writer.flush()
    first = files.poll()
    assert [r["step"] for r in first] == [0, 1, 2]
    assert first[2]["values"] == {"train/loss": pytest.approx(1 / 3), "val/accuracy": pytest.approx(0.7)}

    writer.add_scalar("val/accuracy", 0.9, 3)
    writer.add_text("note", "not a scalar", 3)
    writer.close()
    second = files.poll()
    assert [(r["step"], r["values"]) for r in second] == [(3, {"val/accuracy": pytest.approx(0.9)})]
    assert files.poll() == []


def test_a_lightning_csv_log_rewritten_with_new_columns_hands_on_only_new_rows(tmp_path):
    version = tmp_path / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    log = version / "metrics.csv"
    log.write_text("epoch,step,train_loss\n0,9,0.91\n0,19,0.72\n")
    files = MetricFiles(tmp_path, look_every=0)

    assert [(r["step"], r["values"]) for r in files.poll()] == [(9, {"train_loss": 0.91}), (19, {"train_loss": 0.72})]
    # Lightning writes the file again, whole, when a new metric appears: the header grows, old rows stay.
    log.write_text("epoch,step,train_loss,val_loss\n0,9,0.91,\n0,19,0.72,\n0,19,,0.80\n1,29,0.55,\n")
    assert [(r["step"], r["values"]) for r in files.poll()] == [(19, {"val_loss": 0.80}), (29, {"train_loss": 0.55})]
    assert files.poll() == []


def test_a_csv_row_being_written_waits_for_the_next_poll(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,acc\n0,0.5\n1,0.")
    files = MetricFiles(tmp_path, look_every=0)
    assert files.poll() == []
    log.write_text("epoch,acc\n0,0.5\n1,0.75\n")
    assert [(r["step"], r["values"]) for r in files.poll()] == [(0, {"acc": 0.5}), (1, {"acc": 0.75})]


def test_other_files_and_hidden_folders_are_not_read(tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "metrics.csv").write_text("step,loss\n1,0.5\n")
    (tmp_path / "data.csv").write_text("step,loss\n1,0.5\n")
    assert MetricFiles(tmp_path).poll() == []


def test_csv_rows_without_a_step_column_are_numbered_in_file_order(tmp_path):
    (tmp_path / "metrics.csv").write_text("fit_time,test_score,fold\n0.01,0.91,1\n0.02,0.93,2\n")
    records = MetricFiles(tmp_path).poll()
    assert [(r["step"], r["values"]["test_score"]) for r in records] == [(0, 0.91), (1, 0.93)]
