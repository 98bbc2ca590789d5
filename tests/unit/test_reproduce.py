"""Reproduce: the recorded trial found by id or index, its parameters written back exactly, changes named."""

from __future__ import annotations

import json

import pytest

from mlframework.exceptions import SweepError
from mlframework.sweep.driver.reproduce import find_record, plan_reproduction, provenance_changes
from mlframework.sweep.params.grid_file import load_grid

PARAMS = {"lr": 0.001, "epochs": 3, "label": "two words", "flag": True, "tag": "1.0", "x": 1.0}


def make_sweep(root, tmp_path, records):
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    directory = root / "s1"
    directory.mkdir(parents=True)
    (directory / "sweep.json").write_text(json.dumps({"id": "s1", "project": str(project), "task": "train"}))
    (directory / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn')
    return directory


def test_the_trial_is_found_by_id_or_index_and_its_parameters_come_back_with_their_types(tmp_path):
    root = tmp_path / "res"
    make_sweep(
        root,
        tmp_path,
        [{"trial": "t0000", "index": 0, "params": {"x": 0}}, {"trial": "t0001", "index": 1, "params": PARAMS}],
    )
    assert find_record(root / "s1", "1")["trial"] == "t0001"
    meta, record, grid_file, new_id = plan_reproduction(root, "s1", "t0001", "again-1")
    assert new_id == "again-1" and meta["task"] == "train" and record["params"] == PARAMS
    assert grid_file == root / "s1" / "reproductions" / "again-1.yml"
    (combination,) = list(load_grid(grid_file))
    assert combination == PARAMS and [type(v) for v in combination.values()] == [type(v) for v in PARAMS.values()]


def test_a_missing_sweep_or_trial_is_one_clear_error(tmp_path):
    root = tmp_path / "res"
    with pytest.raises(SweepError, match="no sweep 's1' here"):
        plan_reproduction(root, "s1", "t0000")
    make_sweep(root, tmp_path, [{"trial": "t0000", "index": 0, "params": {"x": 0}}])
    with pytest.raises(SweepError, match="no record of trial 't0009'"):
        plan_reproduction(root, "s1", "t0009")


def test_only_what_differs_is_named():
    before = {"provenance": {"commit": "a", "packages": "p1", "hostname": "h1", "gpu_model": "H100"}}
    after = {"provenance": {"commit": "b", "packages": "p1", "hostname": "h2", "gpu_model": "H100"}}
    assert provenance_changes(before, after) == [("project commit", "a", "b")]
    assert provenance_changes(before, before) == []
