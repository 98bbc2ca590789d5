"""The on-disk record of a sweep: results.csv, trials.jsonl, logs."""

from __future__ import annotations

import csv
import json

from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.records.results import ResultsStore
from mlframework.sweep.trials.tasks import execute_trial
from mlframework.sweep.trials.trial import Trial


def finished(trial: str, index: int, status: str = "SUCCESS", **metrics: float) -> dict:
    return {
        "type": "finished",
        "trial": trial,
        "index": index,
        "status": status,
        "host": "hostA",
        "duration_s": 1.25,
        "params": {"batchsize": 100 * (index + 1), "opt": "adam w"},
        "metrics": metrics,
        "history": [{"step": 0, "values": metrics}],
        "exit_code": 0 if status == "SUCCESS" else 1,
        "command": "python train.py",
    }


def read_csv(store: ResultsStore) -> list[dict[str, str]]:
    with open(store.csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_has_the_specified_columns_in_trial_order(tmp_path):
    store = ResultsStore.create(tmp_path, {"id": "s1"}, ["batchsize", "opt"])
    store.record(finished("t0001", 1, accuracy=0.9, loss=0.3))
    store.record(finished("t0000", 0, status="FAILURE"))
    store.close()
    with open(store.csv_path, newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["trial", "status", "host", "duration_s", "batchsize", "opt", "accuracy", "loss"]
    rows = read_csv(store)
    assert [row["trial"] for row in rows] == ["t0000", "t0001"]
    assert rows[0]["status"] == "FAILURE" and rows[0]["accuracy"] == ""
    assert rows[1]["accuracy"] == "0.9" and rows[1]["opt"] == "adam w" and rows[1]["batchsize"] == "200"


def test_a_duplicate_result_is_recorded_once(tmp_path):
    store = ResultsStore.create(tmp_path, {"id": "s1"}, ["batchsize", "opt"])
    assert store.record(finished("t0000", 0, accuracy=0.5))
    assert not store.record(finished("t0000", 0, accuracy=0.7))
    store.close()
    lines = (store.directory / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["metrics"] == {"accuracy": 0.5}
    assert len(read_csv(store)) == 1


def test_a_reopened_store_knows_what_was_recorded_and_skips_a_torn_line(tmp_path):
    store = ResultsStore.create(tmp_path, {"id": "s1"}, ["batchsize", "opt"])
    store.record(finished("t0000", 0, accuracy=0.5))
    store.close()
    with open(store.trials_path, "a") as handle:
        handle.write('{"trial": "t0001", "sta')  # a crash in the middle of a write
    reopened = ResultsStore(store.directory, ["batchsize", "opt"])
    assert set(reopened.records) == {"t0000"}
    assert reopened.record(finished("t0001", 1, accuracy=0.6))
    reopened.close()
    assert [row["trial"] for row in read_csv(reopened)] == ["t0000", "t0001"]


def test_output_lines_go_to_the_trial_log(tmp_path):
    store = ResultsStore.create(tmp_path, {"id": "s1"}, [])
    store.append_output("t0000", [["stdout", "epoch 1"], ["stderr", "warning: x"]])
    store.append_output("t0000", [["stdout", "epoch 2"]])
    store.close()
    assert store.log_path("t0000").read_text() == "epoch 1\n[stderr] warning: x\nepoch 2\n"
    assert json.loads((store.directory / "sweep.json").read_text()) == {"id": "s1"}


def test_every_field_a_worker_writes_in_a_trial_record_is_declared_in_its_type() -> None:
    declared = TrialRecord.__required_keys__ | TrialRecord.__optional_keys__
    trial = Trial(sweep_id="s", id="t0", index=0, params={"lr": 0.1}, host="h")
    record = execute_trial(lambda t: {"accuracy": 0.9}, trial, lambda event: None)
    assert set(record) - declared == set()
    assert record["metrics"] == {"accuracy": 0.9}
