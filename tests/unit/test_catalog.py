"""Reading sweep directories back (ls, show, --resume): status, counts, damaged directories, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from mlframework.cli.main import cli
from mlframework.sweep.records.catalog import DamagedSweep, find_sweep, list_sweeps, load_sweep
from mlframework.sweep.records.results import ResultsStore


def record(trial: str, index: int, status: str = "SUCCESS", score: float | None = None, **extra):
    now = time.time()
    return {
        "trial": trial,
        "index": index,
        "status": status,
        "host": "h1",
        "gpu": None,
        "params": {"x": index, "opt": "adam" if index % 2 else "sgd"},
        "metrics": {} if score is None else {"score": score},
        "history": []
        if score is None
        else [{"time": now, "step": s, "values": {"score": score * s}} for s in range(3)],
        "duration_s": 1.0,
        "started_at": now - 1,
        "finished_at": now,
        "worker": "local1@h1",
        **extra,
    }


def make_sweep(root, sweep_id, records, status="finished", total=None, **meta):
    store = ResultsStore.create(
        root,
        {
            "id": sweep_id,
            "project": "/p/digits",
            "task": "train",
            "parameters_file": "/p/digits/parameters.yml",
            "parameters": ["x", "opt"],
            "trials": total if total is not None else len(records),
            "status": status,
            "created_at": meta.pop("created_at", "2026-12-01T10:00:00+00:00"),
            "driver_host": socket.gethostname(),
            **meta,
        },
        ["x", "opt"],
    )
    for each in records:
        store.record(each)
    store.close()
    return root / sweep_id


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_counts_best_and_duration_come_from_the_records(tmp_path):
    records = [
        record("t0", 0, score=0.5),
        record("t1", 1, score=0.9),
        record("t2", 2, "FAILURE"),
        record("t3", 3, "PRUNED", score=0.1),
    ]
    make_sweep(tmp_path, "s1", records, total=6)
    summary = load_sweep(tmp_path / "s1").summary()
    assert (summary["done"], summary["failed"], summary["pruned"], summary["total"]) == (2, 1, 1, 6)
    assert (summary["metric"], summary["mode"], summary["best"], summary["best_trial"]) == ("score", "max", 0.9, "t1")
    assert summary["kind"] == "grid" and summary["project"] == "digits"


def test_ls_lists_newest_first_and_says_which_directory_is_damaged(tmp_path):
    make_sweep(tmp_path, "older", [record("t0", 0, score=1.0)], created_at="2026-11-01T10:00:00+00:00")
    make_sweep(tmp_path, "newer", [record("t0", 0, score=2.0)], created_at="2026-12-01T10:00:00+00:00")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "sweep.json").write_text('{"id": "broken", "proj')  # cut short mid-write
    (tmp_path / "empty").mkdir()
    names = [listing.directory.name for listing in list_sweeps(tmp_path)]
    assert names.index("newer") < names.index("older")
    result = invoke("ls", "--results", str(tmp_path))
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert "damaged" in lines["broken"] and "sweep.json" in lines["broken"]
    assert "no sweep.json" in lines["empty"]
    assert "finished" in lines["newer"] and "1/0/0 of 1" in lines["newer"] and "score=2" in lines["newer"]
    rows = json.loads(invoke("ls", "--results", str(tmp_path), "--json").output)
    assert [r["id"] for r in rows if "error" not in r] == ["newer", "older"]
    assert {r["id"] for r in rows if "error" in r} == {"broken", "empty"}


def test_a_running_sweep_whose_driver_is_gone_is_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    make_sweep(tmp_path, "gone", [record("t0", 0, score=1.0)], status="running", total=4, driver_pid=dead.pid)
    make_sweep(tmp_path, "alive", [], status="running", total=4, driver_pid=os.getpid())
    make_sweep(tmp_path, "elsewhere", [], status="running", total=4, driver_host="another-host", driver_pid=1)
    gone, alive, elsewhere = (load_sweep(tmp_path / n) for n in ("gone", "alive", "elsewhere"))
    assert gone.status == "interrupted" and str(dead.pid) in gone.status_note
    assert alive.status == "running" and not alive.status_note
    assert elsewhere.status == "running" and "another-host" in elsewhere.status_note


@pytest.mark.parametrize(
    "content, says",
    [
        ("", "not JSON"),
        ("[1, 2]", "a JSON list"),
        ('{"id": "x"}', "no 'project'"),
        (b"\xff\xfe", "not readable"),
    ],
)
def test_a_damaged_sweep_json_is_one_line_for_show_report_export_and_resume(tmp_path, content, says):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "sweep.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DamagedSweep, match=says):
        load_sweep(directory)
    commands = [
        ["show", "bad"],
        ["report", "bad"],
        ["export", "bad", "--mlflow", f"sqlite:///{tmp_path}/m.db"],
        ["sweep", "--resume", "bad", "--local"],
    ]
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "--results", str(tmp_path)])
        assert result.exit_code == 2, (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        (line,) = result.output.strip().splitlines()
        assert line.startswith("mlframework: error: ") and says in line


def test_a_missing_sweep_and_an_ambiguous_prefix_are_one_line(tmp_path):
    make_sweep(tmp_path, "20261201-a", [])
    make_sweep(tmp_path, "20261201-b", [])
    assert find_sweep(tmp_path, "20261201-a").id == "20261201-a"
    result = CliRunner().invoke(cli, ["show", "20261201", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "matches 2 sweeps" in result.output
    result = CliRunner().invoke(cli, ["show", "nope", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "no sweep 'nope'" in result.output


def test_a_cut_trial_line_is_skipped_and_show_prints_the_table_and_failures(tmp_path):
    directory = make_sweep(
        tmp_path, "s", [record("t0", 0, score=0.5), record("t1", 1, "FAILURE", error="exit code 3")], total=3
    )
    with open(directory / "trials.jsonl", "a") as handle:
        handle.write('{"trial": "t2", "status": "SUC')  # the driver died mid-line
    result = invoke("show", "s", "--results", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "t1 FAILURE h1: exit code 3" in result.output
    assert "best: score=0.5 in t0" in result.output
    assert "1 done, 1 failed, 0 pruned of 3" in result.output
