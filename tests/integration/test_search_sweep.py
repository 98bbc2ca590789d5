"""Searches end to end: embedded mode through the CLI, and real RabbitMQ with real Celery workers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from scratch_projects import CRASH_IN_BATCH, make_project, start_sweep, wait_for_records
from search_projects import make_search_project, pid_alive

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.driver.run import run_sweep
from mlframework.sweep.driver.spec import SweepSpec
from mlframework.sweep.params.space import load_space
from mlframework.sweep.search.plan import SearchPlan, SearchSettings
from mlframework.sweep.search.study import JOURNAL
from mlframework.sweep.wire.app import BrokerSettings


def mlframework(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def _records(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def _study(sweep_dir: Path) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL)))
    return optuna.load_study(study_name=sweep_dir.name, storage=storage)


def _check_pruned(project: Path, records: list[dict]) -> None:
    pruned = [r for r in records if r["status"] == "PRUNED"]
    assert pruned, "a poor trial is pruned"
    for record in pruned:
        assert record["history"], "a pruned trial keeps its history"
        assert "score" in record["metrics"], "and its last metrics"
        assert "pruned" in record["error"]
        assert record["stopped"] == "pruned" and record["stop_latency_s"] is not None
        pid = int((project / "pids" / record["trial"]).read_text())
        assert not pid_alive(pid), f"the process of pruned {record['trial']} is gone"
    first_pruned_end = min(r["finished_at"] for r in pruned)
    assert any(r["started_at"] >= first_pruned_end for r in records), "a freed slot took the next trial"


def test_a_pruned_local_search_stops_poor_trials_and_keeps_every_slot_busy(tmp_path):
    project = make_search_project(tmp_path / "proj")
    result = mlframework(
        "sweep",
        str(project),
        "-p",
        str(project / "search.yml"),
        "--local",
        "--workers",
        "2",
        "--search",
        "random",
        "--trials",
        "12",
        "--seed",
        "0",
        "--metric",
        "score",
        "--prune",
        "median",
        "--results",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = _records(sweep_dir)
    assert len(records) == len({r["trial"] for r in records}) == 12, "--trials counts every trial, pruned included"
    _check_pruned(project, records)
    with open(sweep_dir / "results.csv", newline="") as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert set(statuses) <= {"SUCCESS", "PRUNED"} and "PRUNED" in statuses
    assert f"{statuses.count('PRUNED')} pruned" in result.stdout and "0 failed" in result.stdout
    study = _study(sweep_dir)
    states = [t.state.name for t in study.trials if not t.system_attrs.get("duplicate")]
    assert states.count("PRUNED") == statuses.count("PRUNED") and states.count("COMPLETE") == statuses.count("SUCCESS")


def test_an_interrupted_local_search_resumes_the_same_study_without_rerunning_recorded_trials(tmp_path):
    project = make_search_project(tmp_path / "proj")
    args = ["-p", str(project / "search.yml"), "--search", "tpe", "--trials", "6", "--metric", "score"]
    driver = start_sweep(tmp_path, str(project), *args, "--local", "--workers", "1", "--results", "res")
    try:
        sweep_dir = wait_for_records(tmp_path / "res", 2, timeout=120)
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    before = {r["trial"]: r for r in _records(sweep_dir)}
    result = mlframework(
        "sweep", "--resume", sweep_dir.name, "--local", "--workers", "1", "--results", "res", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = _records(sweep_dir)
    trials = [r["trial"] for r in records]
    assert len(trials) == len(set(trials)) == 6, "no trial recorded twice, the budget of 6 kept"
    after = {r["trial"]: r for r in records}
    for trial, record in before.items():
        assert after[trial]["started_at"] == record["started_at"], f"{trial} was not run again"
    study = _study(sweep_dir)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished) == 6, "the resumed driver told the same study"
    params = {json.dumps(r["params"], sort_keys=True) for r in records}
    assert len(params) == 6, "never the same point twice"


def test_retries_and_failures_inside_a_search(tmp_path):
    project = make_search_project(tmp_path / "proj", "x: !uniform [0.0, 1.0]\nsteps: 2\nfail-first: true\n")
    result = mlframework(
        "sweep",
        str(project),
        "-p",
        str(project / "search.yml"),
        "--local",
        "--workers",
        "2",
        "--search",
        "tpe",
        "--trials",
        "4",
        "--metric",
        "score",
        "--retries",
        "1",
        "--results",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = _records(sweep_dir)
    assert len(records) == 4 and {r["status"] for r in records} == {"SUCCESS"}
    assert all(len(r["attempts"]) == 1 and r["attempts"][0]["status"] == "FAILURE" for r in records)
    assert sum(t.state.name == "COMPLETE" for t in _study(sweep_dir).trials) == 4


def test_max_starts_inside_a_search_fails_the_trial_that_kills_its_worker_and_the_search_goes_on(tmp_path):
    # x == crash SIGKILLs its pool process at every start: after --max-starts 2 it is FAILURE, told FAIL.
    project = make_project(tmp_path / "proj", "x: [1]\n", extra_tasks=CRASH_IN_BATCH)
    (project / "search.yml").write_text("x: [1, 2, 3, 4]\ncrash: 2\n")
    result = mlframework(
        "sweep",
        str(project),
        "--task",
        "crash_at",
        "-p",
        str(project / "search.yml"),
        "--local",
        "--workers",
        "2",
        "--search",
        "grid",
        "--trials",
        "4",
        "--metric",
        "score",
        "--max-starts",
        "2",
        "--results",
        "res",
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = {r["params"]["x"]: r for r in _records(sweep_dir)}
    assert sorted(records) == [1, 2, 3, 4], "one record per trial, the killer included"
    assert records[2]["status"] == "FAILURE" and "worker died 2 times" in records[2]["error"]
    assert all(records[x]["status"] == "SUCCESS" for x in (1, 3, 4))
    trials = [t for t in _study(sweep_dir).trials if not t.system_attrs.get("duplicate")]
    states = {t.user_attrs["params"]["x"]: t.state.name for t in trials if "params" in t.user_attrs}
    assert states == {1: "COMPLETE", 2: "FAIL", 3: "COMPLETE", 4: "COMPLETE"}, "the study heard the failure"


def test_a_pruned_search_on_rabbitmq_with_two_workers(tmp_path, rabbitmq):
    broker = BrokerSettings(url=rabbitmq.url)
    project = make_search_project(tmp_path / "proj")
    spec = SweepSpec(
        project,
        SearchPlan(
            load_space(project / "search.yml"), SearchSettings("random", 10, seed=1, prune="median", grace_s=5.0)
        ),
        results_root=tmp_path / "res",
        metric="score",
    )
    with (
        LocalWorker(broker, project, 1, tmp_path / "a.log", node_name="a@%h"),
        LocalWorker(broker, project, 1, tmp_path / "b.log", node_name="b@%h"),
    ):
        outcome = run_sweep(spec, broker)
    assert len(outcome.records) == 10 and outcome.failed == 0 and outcome.pruned >= 1
    assert outcome.exit_status == 0
    assert {r["worker"].split("@")[0] for r in outcome.records} == {"a", "b"}, "the search used both workers"
    _check_pruned(project, outcome.records)
