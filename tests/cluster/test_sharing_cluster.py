"""Two people's sweeps on one cluster of the stock test hosts: fair share, seen from two clones.

infrainit.sh -m 1 -w 1,2 with two CPU slots per worker host: 4 slots. A second clone of the checkout, given the
cluster's config.sh and secrets.env as a lab member gets them, drives its own sweep from its own process while the
first clone's sweep holds every slot. From the records' start and end times: the second sweep's first trial starts
within one trial length of its start; over the overlap each holds about half of the slots (2 of 4, within 25%:
the overlap is four trial lengths); no trial is lost or run twice. `mlframework status --json` shows both sweeps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mlframework.cluster.services import LABEL_CLUSTER
from testbed.scripted import REPO, copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE

CLUSTER = "mlft-share"
SECONDS = 3.0

SLEEPER = """\
import argparse, time
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int, required=True)
parser.add_argument("--seconds", type=float, required=True)
args = parser.parse_args()
time.sleep(args.seconds)
print(f"loss: {1.0 / args.x}", flush=True)
"""


@pytest.fixture(scope="module")
def cluster(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    """4 slots on hosts 1 and 2 (broker on 1), and two clones that both drive sweeps on it; cleaned afterwards."""
    root = tmp_path_factory.mktemp("sharing")
    first = copy_repo(root / "first")
    project = first / "projects" / "sklearn_digits"
    (project / "sleeper.py").write_text(SLEEPER)
    tasks = project / "tasks.py"
    tasks.write_text(tasks.read_text() + 'sleeper = mlf.train_task("sleeper.py", name="sleeper")\n')
    env = script_env(test_hosts, build_daemon_host)
    hosts = ",".join(test_hosts.host(i).destination for i in (1, 2))
    result = run(
        first,
        "scripts/infrainit.sh",
        *("-a", hosts, "-i", str(test_hosts.client_key), "-r", "mlf-share", "-d", "sklearn_digits"),
        *("-m", "1", "-w", "1,2", "--base-image", BASE_IMAGE, "--broker-image", rabbitmq_image),
        *("--image-source", "ship", "--cpu-slots", "2", "--cluster-name", CLUSTER),
        env=env,
        timeout=1200,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        second = root / "second"
        shutil.copytree(first, second, ignore=shutil.ignore_patterns("results", "__pycache__"))
        yield {"first": first, "second": second, "env": env}
    finally:
        clean = run(first, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        for i in (1, 2):
            left = test_hosts.docker(i).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={CLUSTER}"})
            assert left == [], f"infra_clean.sh left containers on host {i}: {[c.name for c in left]}"


def _mlframework(*args: str) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework", *args]


def _sweep(clone: Path, env: dict[str, str], grid: str) -> subprocess.Popen[str]:
    (clone / "share.yml").write_text(grid)
    argv = _mlframework("sweep", "projects/sklearn_digits", "--task", "sleeper", "-p", "share.yml", "--metric", "loss")
    return subprocess.Popen(argv, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _records(clone: Path) -> list[dict]:
    (trials,) = (clone / "results").glob("*/trials.jsonl")
    return [json.loads(line) for line in trials.read_text().splitlines()]


def _held(records: list[dict], t0: float, t1: float) -> float:
    return sum(max(0.0, min(r["finished_at"], t1) - max(r["started_at"], t0)) for r in records) / (t1 - t0)


def test_two_clones_share_the_slots_of_one_cluster(cluster):
    first, second, env = cluster["first"], cluster["second"], cluster["env"]
    a = _sweep(first, env, f"x: !!python/tuple [1, 17]\nseconds: [{SECONDS}]\n")
    time.sleep(SECONDS * 2.5)  # the first sweep holds every slot
    b = _sweep(second, env, f"x: !!python/tuple [101, 109]\nseconds: [{SECONDS}]\n")
    b_start = None
    status: dict = {}
    deadline = time.monotonic() + 60
    while b_start is None and time.monotonic() < deadline:
        if list((second / "results").glob("*/sweep.json")):
            b_start = time.time()
        time.sleep(0.02)
    time.sleep(2.0)
    shown = subprocess.run(
        _mlframework("status", "--json"), cwd=second, env=env, capture_output=True, text=True, timeout=60
    )
    if shown.returncode == 0:
        status = json.loads(shown.stdout)
    try:
        out_a, _ = a.communicate(timeout=240)
        out_b, _ = b.communicate(timeout=240)
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.kill()
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    assert b_start is not None
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert len(status["nodes"]) == 2 and len(status["sweeps"]) == 2, status
    assert {sweep["total"] for sweep in status["sweeps"]} == {16, 8}
    assert all("@" in sweep["owner"] for sweep in status["sweeps"])

    a_records, b_records = _records(first), _records(second)
    for records, count in ((a_records, 16), (b_records, 8)):
        assert len(records) == len({r["trial"] for r in records}) == count, "no trial lost or run twice"
        assert {r["status"] for r in records} == {"SUCCESS"}
    trial_length = sorted(r["finished_at"] - r["started_at"] for r in a_records)[8]
    first_b = min(r["started_at"] for r in b_records)
    assert first_b - b_start <= trial_length, (first_b - b_start, trial_length)
    t1 = min(max(r["started_at"] for r in a_records), max(r["started_at"] for r in b_records))
    held = (_held(a_records, first_b, t1), _held(b_records, first_b, t1))
    assert all(1.5 <= each <= 2.5 for each in held), held
