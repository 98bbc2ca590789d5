"""What the commands share (cli/common.py): one duration type, resume hints, one sweep-id resolver for every command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mlframework.cli.common import DURATION, parse_duration, recorded_resume_command, resume_command
from mlframework.cli.main import cli
from mlframework.sweep.records.catalog import UnknownSweep, resolve_sweep_id


def test_durations():
    assert [parse_duration(t) for t in ("90", "90s", "1.5m", "2h", "1d", " 30M ")] == [90, 90, 90, 7200, 86400, 1800]
    for bad in ("", "0", "-5s", "soon", "inf", "5 minutes", "1e400"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_bad_duration_is_one_usage_line_naming_the_option():
    @click.command()
    @click.option("--timeout", type=DURATION)
    def command(timeout: float) -> None:
        click.echo(repr(timeout))

    assert CliRunner().invoke(command, ["--timeout", "1.5m"]).output == "90.0\n"
    result = CliRunner().invoke(command, ["--timeout", "soon"])
    assert result.exit_code == 2 and "--timeout" in result.output and "such as 90, 90s" in result.output


def make_sweep(root: Path, sweep_id: str, broker: str = "amqp://h//", status: str = "running") -> Path:
    directory = root / sweep_id
    directory.mkdir(parents=True)
    meta = {
        "id": sweep_id,
        "project": str(root),
        "task": "train",
        "parameters_file": str(root / "parameters.yml"),
        "trials": 3,
        "status": status,
        "broker": broker,
        "driver_host": os.uname().nodename,
        "driver_pid": 2**22 + 17,  # no such process
    }
    (directory / "sweep.json").write_text(json.dumps(meta))
    (directory / "trials.jsonl").write_text("")
    return directory


def test_a_sweep_id_is_the_exact_id_else_a_unique_prefix(tmp_path):
    make_sweep(tmp_path, "20261207-155725-mnist-3f2a")
    make_sweep(tmp_path, "20261207-155725-mnist-3f2a-again")
    make_sweep(tmp_path, "20261208-090000-mnist-aaaa")
    assert resolve_sweep_id(tmp_path, "20261207-155725-mnist-3f2a") == "20261207-155725-mnist-3f2a", "exact wins"
    assert resolve_sweep_id(tmp_path, "20261208") == "20261208-090000-mnist-aaaa"
    with pytest.raises(UnknownSweep) as ambiguous:
        resolve_sweep_id(tmp_path, "20261207")
    assert str(ambiguous.value).count("\n") == 0 and "matches 2 sweeps" in str(ambiguous.value)
    assert "20261207-155725-mnist-3f2a, 20261207-155725-mnist-3f2a-again" in str(ambiguous.value)
    with pytest.raises(UnknownSweep, match=f"no sweep '2025' in {tmp_path}"):
        resolve_sweep_id(tmp_path, "2025")
    with pytest.raises(UnknownSweep, match="not a sweep id"):
        resolve_sweep_id(tmp_path, "../x")


@pytest.mark.parametrize("command", ["show", "report", "export", "cancel", "reproduce", "sweep --resume"])
def test_every_command_that_takes_a_sweep_id_says_the_same_for_an_unknown_or_ambiguous_one(tmp_path, command):
    make_sweep(tmp_path, "20261207-155725-a")
    make_sweep(tmp_path, "20261207-155725-b")
    extra = {"export": ["--mlflow", "sqlite:///x.db"], "reproduce": ["t0000"], "cancel": ["--broker", "amqp://x//"]}
    for given, words in (("20261207", "matches 2 sweeps"), ("2025", "no sweep '2025' in")):
        if command == "cancel" and given == "2025":  # not here: a detached sweep, cancelled through its broker
            continue
        args = [*command.split(), given, *extra.get(command, []), "--results", str(tmp_path)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output, result.output


def test_resume_hints_resume_the_sweep_as_it_ran(tmp_path):
    make_sweep(tmp_path, "emb", broker="mlfs:/tmp/broker")
    make_sweep(tmp_path, "clu")
    root = tmp_path.resolve()
    assert recorded_resume_command(tmp_path, "emb") == f"mlframework sweep --resume emb --results {root} --local"
    assert recorded_resume_command(tmp_path, "clu") == f"mlframework sweep --resume clu --results {root}"
    assert resume_command("s", tmp_path, local=True, workers=2, gpus="0,1").endswith("--local --workers 2 --gpus 0,1")


def test_cancel_of_an_embedded_sweep_by_a_prefix_prints_the_command_that_resumes_it(tmp_path):
    make_sweep(tmp_path, "20261207-155725-emb", broker="mlfs:/tmp/broker")
    result = CliRunner().invoke(cli, ["cancel", "20261207", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "cancelled sweep 20261207-155725-emb: no driver was running" in result.output
    resume = f"mlframework sweep --resume 20261207-155725-emb --results {tmp_path.resolve()} --local"
    assert result.output.splitlines()[-1] == f"resume it: {resume}"
    ls = CliRunner().invoke(cli, ["ls", "--results", str(tmp_path), "--json"])
    assert json.loads(ls.output)[0]["status"] == "cancelled"
