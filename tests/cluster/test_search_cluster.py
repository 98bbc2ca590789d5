"""A TPE search pruned by the median rule on two test hosts: the pruned trial's process is gone, its slot goes on.

infrainit.sh -m 1 -w 1,2 with one CPU slot per worker host, so that "its slot"
is the host's only one. The training script (added to the copy's
sklearn_digits project) learns at the rate ``x`` and reports each step through
``metrics.log``; poor rates fall under the median of the finished trials and are
pruned. While the sweep runs, each PRUNED record, as soon as it is on disk, is
checked against the worker container of its host: the trial's process is gone
there (no process of that pid with that trial's id in its environment).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mlframework.cluster.services import LABEL_CLUSTER
from testbed.scripted import REPO, copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE

CLUSTER = "mlft-search"
WORKER = f"{CLUSTER}-worker-cpu"
TRIALS = 12

PROBE = """\
import argparse, os, time
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--pause", type=float, default=0.5)
args, _ = parser.parse_known_args()
print(f"probe pid={os.getpid()}", flush=True)
for step in range(args.steps):
    time.sleep(args.pause)
    metrics.log(step=step, score=args.x * (step + 1))
"""

SPACE = "x: !uniform [0.0, 1.0]\nsteps: 8\n"


@pytest.fixture(scope="module")
def cluster(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    """The search probe's cluster: broker on host 1, one worker slot on each of hosts 1 and 2; cleaned afterwards."""
    repo = copy_repo(tmp_path_factory.mktemp("search-cluster") / "repo")
    project = repo / "projects" / "sklearn_digits"
    (project / "search_probe.py").write_text(PROBE)
    tasks = project / "tasks.py"
    tasks.write_text(tasks.read_text() + 'probe = mlf.train_task("search_probe.py", name="probe")\n')
    (repo / "search.yml").write_text(SPACE)
    env = script_env(test_hosts, build_daemon_host)
    hosts = ",".join(test_hosts.host(i).destination for i in (1, 2))
    result = run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        hosts,
        "-i",
        str(test_hosts.client_key),
        "-r",
        "mlf-search",
        "-d",
        "sklearn_digits",
        "-m",
        "1",
        "-w",
        "1,2",
        "--base-image",
        BASE_IMAGE,
        "--broker-image",
        rabbitmq_image,
        "--image-source",
        "ship",
        "--cpu-slots",
        "1",
        "--cluster-name",
        CLUSTER,
        env=env,
        timeout=1200,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"repo": repo, "env": env}
    finally:
        clean = run(repo, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        for i in (1, 2):
            left = test_hosts.docker(i).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={CLUSTER}"})
            assert left == [], f"infra_clean.sh left containers on host {i}: {[c.name for c in left]}"


def _records(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _probe_pid(sweep_dir: Path, trial: str) -> int:
    match = re.search(r"probe pid=(\d+)", (sweep_dir / "logs" / f"{trial}.log").read_text())
    assert match, f"{trial} printed its pid"
    return int(match.group(1))


def _running_on_host(test_hosts, record: dict, pid: int) -> bool:
    """Whether ``pid`` in the worker container of the record's host is still the process of that trial."""
    index = next(i for i in (1, 2) if test_hosts.host(i).name == record["host"])
    container = test_hosts.docker(index).containers.get(WORKER)
    probe = f"cat /proc/{pid}/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '^MLFRAMEWORK_TRIAL_ID={record['trial']}$'"
    code, output = container.exec_run(["sh", "-c", probe])
    count = output.decode().strip()
    assert count.isdigit(), f"cannot look into {WORKER} on {record['host']}: exit {code}, {output!r}"
    return int(count) > 0


def test_a_pruned_tpe_search_stops_the_trial_process_on_its_host_and_its_slot_runs_the_next(cluster, test_hosts):
    repo, env = cluster["repo"], cluster["env"]
    mlframework = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework"]
    argv = [
        *mlframework,
        "sweep",
        "projects/sklearn_digits",
        "--task",
        "probe",
        "-p",
        "search.yml",
        "--search",
        "tpe",
        "--trials",
        str(TRIALS),
        "--seed",
        "0",
        "--metric",
        "score",
        "--prune",
        "median",
        "--results",
        "searches",
    ]
    driver = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checked: dict[str, bool] = {}  # pruned trial -> its process was still there when its record was written
    sweep_dir = None
    try:
        deadline = time.monotonic() + 400
        while driver.poll() is None and time.monotonic() < deadline:
            dirs = list((repo / "searches").glob("*/trials.jsonl")) if (repo / "searches").exists() else []
            if dirs:
                sweep_dir = dirs[0].parent
                for record in _records(sweep_dir):
                    if record["status"] == "PRUNED" and record["trial"] not in checked:
                        pid = _probe_pid(sweep_dir, record["trial"])
                        checked[record["trial"]] = _running_on_host(test_hosts, record, pid)
            time.sleep(0.3)
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate(timeout=30)
    assert driver.returncode == 0, output
    assert sweep_dir is not None, output
    records = _records(sweep_dir)
    assert len(records) == len({r["trial"] for r in records}) == TRIALS, "--trials counts every trial, pruned included"
    assert {r["status"] for r in records} <= {"SUCCESS", "PRUNED"}
    pruned = [r for r in records if r["status"] == "PRUNED"]
    assert pruned, f"the median pruner stopped no trial: {output}"
    assert {r["host"] for r in records} == {test_hosts.host(1).name, test_hosts.host(2).name}, "both hosts ran trials"
    assert set(checked) == {r["trial"] for r in pruned}
    still = [trial for trial, alive in checked.items() if alive]
    assert not still, f"the process of pruned trial(s) {still} was still running on its host after its record"
    for record in pruned:
        assert record["stopped"] == "pruned" and "pruned by the median pruner" in record["error"]
        assert record["history"] and "score" in record["metrics"], "a pruned trial keeps its history and metrics"
        assert not _running_on_host(test_hosts, record, _probe_pid(sweep_dir, record["trial"]))
    followers = [
        (record["trial"], later["trial"])
        for record in pruned
        for later in records
        if later["worker"] == record["worker"] and later["started_at"] >= record["finished_at"]
    ]
    assert followers, "the slot of a pruned trial (one slot per host) ran another trial after it"
    assert f"{len(pruned)} pruned" in output and "0 failed" in output


BOHB_TRIALS = 10


def test_a_bohb_search_pruned_by_hyperband_runs_every_trial_on_the_hosts_workers(cluster, test_hosts):
    """``--search bohb --prune hyperband`` on the cluster: every trial recorded, some pruned, none run here."""
    repo, env = cluster["repo"], cluster["env"]
    (repo / "bohb.yml").write_text("x: !uniform [0.0, 1.0]\nsteps: 9\npause: 0.2\n")
    argv = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework", "sweep", "projects/sklearn_digits"]
    argv += ["--task", "probe", "-p", "bohb.yml", "--search", "bohb", "--trials", str(BOHB_TRIALS), "--seed", "0"]
    argv += ["--metric", "score", "--prune", "hyperband", "--results", "bohb-searches"]
    result = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    (sweep_dir,) = (repo / "bohb-searches").iterdir()
    records = _records(sweep_dir)
    assert len(records) == len({r["trial"] for r in records}) == BOHB_TRIALS, "every trial asked is recorded once"
    assert {r["status"] for r in records} <= {"SUCCESS", "PRUNED"}, output
    pruned = [r for r in records if r["status"] == "PRUNED"]
    assert pruned, f"hyperband stopped no trial: {output}"
    assert all("pruned by the hyperband pruner" in r["error"] for r in pruned)
    hosts = {test_hosts.host(1).name, test_hosts.host(2).name}
    assert {r["host"] for r in records} == hosts, "the trials ran on the workers of both hosts, none here"
    assert socket.gethostname() not in hosts, "the test hosts are not this machine"
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["search"]["sampler"] == "bohb" and meta["search"]["prune"] == "hyperband"
    assert f"{len(pruned)} pruned" in output and "0 failed" in output
