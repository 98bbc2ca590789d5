"""A local master (``-m local``): RabbitMQ and Flower on this machine, workers on two test hosts.

"This machine" is the root network namespace with its own Docker daemon (the
build daemon of the fixtures, reached through DOCKER_HOST as a user's would
be); the workers on the test hosts reach the broker at this machine's address
on their network, and the sweep runs from here.
"""

from __future__ import annotations

import csv

import docker
import pytest

from mlframework.cluster.services import BROKER_NAME, LABEL_CLUSTER
from testbed.scripted import copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE, ensure_rabbitmq_image

CLUSTER = "mlft-localmaster"


@pytest.fixture(scope="module")
def local_master(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    ensure_rabbitmq_image(docker.DockerClient(base_url=build_daemon_host), rabbitmq_image)
    repo = copy_repo(tmp_path_factory.mktemp("local-master") / "repo")
    (repo / "projects" / "sklearn_digits" / "parameters.yml").write_text("model: [svc, knn]\nC: [1.0, 10.0]\n")
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
        "mlf-local",
        "-d",
        "sklearn_digits",
        "-m",
        "local",
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
        timeout=900,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"repo": repo, "env": env, "init": result}
    finally:
        clean = run(repo, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        local = docker.DockerClient(base_url=build_daemon_host)
        assert local.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={CLUSTER}"}) == []
        for i in (1, 2):
            assert test_hosts.docker(i).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={CLUSTER}"}) == []


def test_broker_and_flower_run_on_this_machine(local_master, build_daemon_host):
    assert "local: RabbitMQ started" in local_master["init"].stdout
    local = docker.DockerClient(base_url=build_daemon_host)
    running = {c.name for c in local.containers.list(filters={"label": f"{LABEL_CLUSTER}={CLUSTER}"})}
    assert running == {f"{CLUSTER}-flower"}
    assert local.containers.get(BROKER_NAME).status == "running", "the broker is the host's, shared by projects"
    config = (local_master["repo"] / "config.sh").read_text()
    assert 'MASTER="local"' in config and 'WORKERS="1,2"' in config


def test_workers_on_the_hosts_reach_the_local_broker_and_sweep(local_master):
    repo, env = local_master["repo"], local_master["env"]
    status = run(repo, "scripts/check_celery_status.sh", env=env, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert sorted(line.split()[1].rstrip(":") for line in status.stdout.splitlines() if line.startswith("->")) == [
        "cpu@mlft1",
        "cpu@mlft2",
    ]
    sweep = run(repo, "scripts/run_tasks.sh", "run_training", "--results", "sweeps", env=env, timeout=600)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    (sweep_dir,) = (repo / "sweeps").iterdir()
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {row["status"] for row in rows} == {"SUCCESS"}
    assert {row["host"] for row in rows} == {"mlft1", "mlft2"}, "both worker hosts ran trials"
