"""End to end on three real test hosts: infrainit -> status -> echo -> sweep -> Flower -> update -> clean.

Everything is real: SSH with checked host keys, the hosts' own Docker daemons,
RabbitMQ and Flower in containers on host 1, Celery workers in containers on
hosts 1-3. The scripts run in a copy of the repository so that config.sh,
infra_clean.sh and the secrets file they write never touch the checkout.
"""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from scratch_projects import wait_for_records

from mlframework.cluster.services import LABEL_CLUSTER
from testbed.scripted import REPO, copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE

GRID = "model: [svc, logreg]\nC: [0.1, 1.0, 10.0]\n"


@pytest.fixture(scope="module")
def cluster(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    """infrainit.sh -m 1 -w 1,2,3 on the test hosts, shipped images; cleaned afterwards."""
    repo = copy_repo(tmp_path_factory.mktemp("cluster") / "repo")
    (repo / "projects" / "sklearn_digits" / "parameters.yml").write_text(GRID)
    env = script_env(test_hosts, build_daemon_host)
    hosts = ",".join(test_hosts.host(i).destination for i in (1, 2, 3))
    started = time.monotonic()
    result = run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        hosts,
        "-i",
        str(test_hosts.client_key),
        "-r",
        "mlf",
        "-d",
        "sklearn_digits",
        "-m",
        "1",
        "-w",
        "1,2,3",
        "--base-image",
        BASE_IMAGE,
        "--broker-image",
        rabbitmq_image,
        "--image-source",
        "ship",
        "--cpu-slots",
        "2",
        env=env,
        timeout=1200,
    )
    try:  # a failed infrainit may have started containers: they are cleaned too
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"repo": repo, "env": env, "init": result, "init_seconds": time.monotonic() - started}
    finally:
        clean = run(repo, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        for i in (1, 2, 3):
            left = test_hosts.docker(i).containers.list(all=True, filters={"label": LABEL_CLUSTER})
            assert left == [], f"infra_clean.sh left containers on host {i}: {[c.name for c in left]}"


def test_infrainit_records_options_and_secrets_privately(cluster, test_hosts):
    repo = cluster["repo"]
    config = (repo / "config.sh").read_text()
    assert 'MASTER="1"' in config and 'WORKERS="1,2,3"' in config and 'PROJECT="sklearn_digits"' in config
    secrets_file = repo / ".mlframework" / "secrets.env"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    password = next(
        line.split("=", 1)[1].strip('"')
        for line in secrets_file.read_text().splitlines()
        if line.startswith("RABBITMQ_PASSWORD=")
    )
    assert password not in config and password not in cluster["init"].stdout + cluster["init"].stderr
    assert (repo / "infra_clean.sh").stat().st_mode & 0o100
    lint = subprocess.run(["shellcheck", str(repo / "infra_clean.sh")], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout


def test_check_celery_status_lists_all_three_workers(cluster):
    result = run(cluster["repo"], "scripts/check_celery_status.sh", env=cluster["env"], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = [line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith("->")]
    assert sorted(nodes) == ["cpu@mlft1", "cpu@mlft2", "cpu@mlft3"]


def test_run_tasks_test_echo_streams_worker_output(cluster):
    result = run(
        cluster["repo"],
        "scripts/run_tasks.sh",
        "test_echo",
        "--results",
        "echo-results",
        env=cluster["env"],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    streamed = [line for line in result.stdout.splitlines() if line.startswith("[t000")]
    assert streamed, result.stdout
    assert any(" mlft" in line.split("]")[0] for line in streamed), "lines are prefixed by trial and host"


def test_run_training_sweeps_on_several_hosts(cluster):
    result = run(
        cluster["repo"], "scripts/run_tasks.sh", "run_training", "--results", "sweeps", env=cluster["env"], timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (cluster["repo"] / "sweeps").iterdir()
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {row["status"] for row in rows} == {"SUCCESS"}
    assert len({row["host"] for row in rows}) > 1, f"trials all ran on {rows[0]['host']}"
    assert max(float(row["accuracy"]) for row in rows) >= 0.9


def test_a_detached_sweep_runs_on_the_master_then_is_followed_and_fetched(cluster):
    repo, env = cluster["repo"], cluster["env"]
    started = run(repo, "scripts/run_tasks.sh", "run_training", "--detach", "--retries", "1", env=env, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    sweep_id = started.stdout.split()[1].rstrip(":")
    assert "driver running on mlft1@" in started.stdout
    mlframework = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework"]
    followed = run(repo, *mlframework, "follow", sweep_id, env=env, timeout=300)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert f"sweep {sweep_id} finished" in followed.stdout and "6 succeeded" in followed.stdout
    fetched = run(repo, *mlframework, "fetch", sweep_id, "--results", "fetched", env=env, timeout=120)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    with open(repo / "fetched" / sweep_id / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {row["status"] for row in rows} == {"SUCCESS"}
    assert len({row["host"] for row in rows}) > 1
    meta = json.loads((repo / "fetched" / sweep_id / "sweep.json").read_text())
    assert meta["status"] == "finished" and meta["retries"] == 1


def _flower(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_flower_requires_credentials_and_lists_the_workers(cluster, test_hosts):
    secrets = dict(
        line.split("=", 1)
        for line in (cluster["repo"] / ".mlframework" / "secrets.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    auth = (secrets["FLOWER_USER"].strip('"'), secrets["FLOWER_PASSWORD"].strip('"'))
    base = f"http://{test_hosts.host(1).address}:5555"
    assert _flower(f"{base}/")[0] == 401
    assert _flower(f"{base}/api/workers")[0] == 401
    deadline = time.monotonic() + 60
    workers: dict = {}
    while time.monotonic() < deadline:
        status, body = _flower(f"{base}/api/workers?refresh=1", auth)
        assert status == 200
        workers = json.loads(body)
        if len(workers) == 3:
            break
        time.sleep(2)
    assert sorted(workers) == ["cpu@mlft1", "cpu@mlft2", "cpu@mlft3"]


def test_secrets_shows_credentials_that_reach_the_workers_and_flower(cluster, test_hosts):
    repo, env = cluster["repo"], cluster["env"]
    mlframework = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework"]
    shown = run(repo, *mlframework, "secrets", env=env, timeout=60)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    values = dict(line.strip().split(": ", 1) for line in shown.stdout.splitlines()[1:])
    values = {key: value.strip() for key, value in values.items()}
    assert values["Flower"] == f"http://{test_hosts.host(1).address}:5555/"
    status = run(repo, *mlframework, "status", "--broker", values["broker URL"], env=env, timeout=60)
    assert status.returncode == 0 and status.stdout.count("->") == 3, status.stdout + status.stderr
    assert values["RabbitMQ password"] not in status.stdout + status.stderr
    assert _flower(f"{values['Flower']}api/workers", (values["Flower user"], values["Flower password"]))[0] == 200


def test_update_files_with_nothing_changed_is_quick_and_a_change_restarts_workers(cluster, test_hosts):
    repo, env = cluster["repo"], cluster["env"]
    result = run(repo, "scripts/update_files.sh", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 file(s) changed in all" in result.stdout
    tasks = repo / "projects" / "sklearn_digits" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\n# touched by the test\n")
    result = run(repo, "scripts/update_files.sh", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("restarted 1 worker(s)") == 3
    synced = test_hosts.ssh(2, "tail -1 ~/mlf/project/tasks.py", check=True).stdout
    assert "touched by the test" in synced
    status = run(repo, "scripts/check_celery_status.sh", "--timeout", "10", env=env, timeout=120)
    assert status.stdout.count("->") == 3, status.stdout


def test_infrainit_again_converges_without_new_containers(cluster, test_hosts):
    before = {
        i: {c.id for c in test_hosts.docker(i).containers.list(filters={"label": LABEL_CLUSTER})} for i in (1, 2, 3)
    }
    result = run(cluster["repo"], "scripts/infrainit.sh", "-f", env=cluster["env"], timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {
        i: {c.id for c in test_hosts.docker(i).containers.list(filters={"label": LABEL_CLUSTER})} for i in (1, 2, 3)
    }
    assert after == before
    assert "already running" in result.stdout


def test_worker_containers_killed_mid_sweep_lose_no_trial_and_duplicate_none(cluster, test_hosts):
    # Last in this module: it leaves the cluster with fewer workers than it had.
    repo, env = cluster["repo"], cluster["env"]
    (repo / "chaos.yml").write_text("k: !!python/tuple [0, 60]\nn: [0.7]\n")
    mlframework = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework"]
    driver = subprocess.Popen(
        [*mlframework, "sweep", "projects/sklearn_digits", "--task", "echo", "-p", "chaos.yml", "--results", "chaos"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = "sklearn-digits-worker-cpu"
    # (records before the kill, host whose worker container is SIGKILLed, restart it afterwards)
    plan = [(8, 2, True), (20, 3, False), (34, 2, False)]
    killed = []
    try:
        for records, host, restart in plan:
            sweep_dir = wait_for_records(repo / "chaos", records, timeout=120)
            container = test_hosts.docker(host).containers.get(worker)
            container.kill()  # SIGKILL: the worker and its running trials die at once
            killed.append(host)
            if restart:
                time.sleep(2)
                container.start()
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    trials = [r["trial"] for r in records]
    assert len(trials) == len(set(trials)), "a trial was recorded twice"
    assert sorted(trials) == [f"t{i:04d}" for i in range(60)], "a trial was lost"
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and {row["status"] for row in rows} == {"SUCCESS"}
    assert killed == [2, 3, 2]
    assert any(r["redelivered"] for r in records), "trials of the killed workers ran again elsewhere"
