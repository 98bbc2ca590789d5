"""Flower tells the truth: after a cluster sweep with failing trials, its API shows them FAILURE.

A cluster on the test hosts (infrainit -m 1 -w 1,2, shipped images) runs a sweep of a small project
task whose script exits 1 for half of the grid. Flower's HTTP API (``/api/tasks``, behind the login
of ``.mlframework/secrets.env``) must then list every trial's task: FAILURE for the trials whose
script exited 1, SUCCESS for the others, each task named by its sweep and trial (task id
``<sweep-id>.<trial>``, the trial in its arguments), while the sweep still records each trial once.
"""

from __future__ import annotations

import base64
import csv
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from mlframework.cluster.services import LABEL_CLUSTER
from testbed.scripted import REPO, copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE

# A script that exits 1 when told to fail; a task of the project that runs it.
FLAKY_SCRIPT = """\
import argparse, sys
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--fail", type=int, required=True)
parser.add_argument("--n", type=int, required=True)
args = parser.parse_args()
if args.fail:
    print("failing on purpose", file=sys.stderr)
    sys.exit(1)
metrics.log(score=args.n / 10)
"""
FLAKY_TASK = '\nflaky = mlf.train_task("flaky.py", name="flaky")\n'
FLAKY_GRID = "fail: [0, 1]\nn: [1, 2, 3]\n"  # t0000..t0005: fail is 1 in t0003, t0004, t0005


@pytest.fixture(scope="module")
def cluster(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    """infrainit.sh -m 1 -w 1,2 on the test hosts, with the flaky task in the project; cleaned afterwards."""
    repo = copy_repo(tmp_path_factory.mktemp("flower") / "repo")
    project = repo / "projects" / "sklearn_digits"
    (project / "flaky.py").write_text(FLAKY_SCRIPT)
    (project / "flaky.yml").write_text(FLAKY_GRID)
    with open(project / "tasks.py", "a") as handle:
        handle.write(FLAKY_TASK)
    env = script_env(test_hosts, build_daemon_host)
    hosts = ",".join(test_hosts.host(i).destination for i in (1, 2))
    options = ["-r", "mlf", "-d", "sklearn_digits", "-m", "1", "-w", "1,2", "--cpu-slots", "2"]
    images = ["--base-image", BASE_IMAGE, "--broker-image", rabbitmq_image, "--image-source", "ship"]
    result = run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        hosts,
        "-i",
        str(test_hosts.client_key),
        *options,
        *images,
        env=env,
        timeout=1200,
    )
    try:  # a failed infrainit may have started containers: they are cleaned too
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"repo": repo, "env": env}
    finally:
        clean = run(repo, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        for i in (1, 2):
            left = test_hosts.docker(i).containers.list(all=True, filters={"label": LABEL_CLUSTER})
            assert left == [], f"infra_clean.sh left containers on host {i}: {[c.name for c in left]}"


def _secrets(repo: Any) -> dict[str, str]:
    lines = (repo / ".mlframework" / "secrets.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def _get_json(url: str, auth: tuple[str, str]) -> Any:
    request = urllib.request.Request(url)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_flower_lists_failed_trials_as_failure_and_names_sweep_and_trial(cluster, test_hosts):
    repo, env = cluster["repo"], cluster["env"]
    mlframework = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework"]
    sweep = run(
        repo,
        *mlframework,
        "sweep",
        "projects/sklearn_digits",
        "--task",
        "flaky",
        "-p",
        "projects/sklearn_digits/flaky.yml",
        "--results",
        "sweeps",
        "--max-batch",
        "1",  # one task per trial, so that each trial is one task in Flower
        "-q",
        env=env,
        timeout=300,
    )
    assert sweep.returncode == 1, sweep.stdout + sweep.stderr  # some trials failed
    (sweep_dir,) = (repo / "sweeps").iterdir()
    sweep_id = sweep_dir.name
    with open(sweep_dir / "results.csv", newline="") as handle:
        recorded = {row["trial"]: row["status"] for row in csv.DictReader(handle)}
    expected = {f"t000{i}": "SUCCESS" if i < 3 else "FAILURE" for i in range(6)}
    assert recorded == expected  # each trial recorded once, with its true status
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert sorted(record["trial"] for record in records) == sorted(expected)

    secrets = _secrets(repo)
    auth = (secrets["FLOWER_USER"], secrets["FLOWER_PASSWORD"])
    base = f"http://{test_hosts.host(1).address}:5555"
    # Flower learns of task states from the workers' events: a moment after the sweep's end at most.
    deadline = time.monotonic() + 60
    ours: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        tasks = _get_json(f"{base}/api/tasks", auth)
        ours = {uuid: task for uuid, task in tasks.items() if uuid.startswith(f"{sweep_id}.")}
        if len(ours) == 6 and all(task.get("state") in ("SUCCESS", "FAILURE") for task in ours.values()):
            break
        time.sleep(1)
    # Which trial of which sweep each task is: its id (<sweep-id>.<trial>) and the trial in its arguments.
    by_trial = {uuid.removeprefix(f"{sweep_id}."): task for uuid, task in ours.items()}
    assert sorted(by_trial) == sorted(expected), sorted(ours)
    for trial, task in by_trial.items():
        assert task["name"] == "flaky", task
        assert json.loads(task["kwargs"])["trial"] == trial, task
        assert task["state"] == expected[trial], (trial, task)
        if expected[trial] == "FAILURE":
            assert "TrialNotSucceeded" in task["exception"] and trial in task["exception"], task
            assert "exit code 1" in task["exception"], task  # the reason: the script's exit status
    # The workers went on after each failure: every worker still answers, and ran the trials above.
    workers = _get_json(f"{base}/api/workers?refresh=1", auth)
    assert sorted(workers) == ["cpu@mlft1", "cpu@mlft2"], sorted(workers)
    assert {task["worker"] for task in by_trial.values()} <= set(workers)
