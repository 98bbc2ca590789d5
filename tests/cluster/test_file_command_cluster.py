"""A cluster that serves a project with no tasks.py (projects/byo_command): its command is in parameters.yml.

infrainit accepts the project, its worker container starts without a tasks.py to import and
has the built-in command task, and a sweep run from here records every trial's command line.
"""

from __future__ import annotations

import json

import docker
import pytest

from mlframework.cluster.services import LABEL_CLUSTER
from testbed.scripted import REPO, copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE, ensure_rabbitmq_image

CLUSTER = "mlft-filecmd"


@pytest.fixture(scope="module")
def file_command_cluster(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    """infrainit.sh -d byo_command -m local -w 1: the broker here, one worker container on a test host."""
    ensure_rabbitmq_image(docker.DockerClient(base_url=build_daemon_host), rabbitmq_image)
    repo = copy_repo(tmp_path_factory.mktemp("file-command") / "repo")
    assert not (repo / "projects" / "byo_command" / "tasks.py").exists()
    env = script_env(test_hosts, build_daemon_host)
    result = run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        test_hosts.host(1).destination,
        "-i",
        str(test_hosts.client_key),
        "-r",
        "mlf-filecmd",
        "-d",
        "byo_command",
        "-m",
        "local",
        "-w",
        "1",
        "--base-image",
        BASE_IMAGE,
        "--broker-image",
        rabbitmq_image,
        "--image-source",
        "ship",
        "--cpu-slots",
        "2",
        "--cluster-name",
        CLUSTER,
        env=env,
        timeout=900,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"repo": repo, "env": env}
    finally:
        clean = run(repo, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert test_hosts.docker(1).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={CLUSTER}"}) == []


def test_a_worker_container_with_no_tasks_py_runs_the_parameters_file_s_command(file_command_cluster):
    repo, env = file_command_cluster["repo"], file_command_cluster["env"]
    mlframework = [str(REPO / ".venv" / "bin" / "python"), "-m", "mlframework"]
    sweep = run(
        repo,
        *mlframework,
        "sweep",
        "projects/byo_command",
        "--results",
        "sweeps",
        "--metric",
        "val_loss",
        env=env,
        timeout=600,
    )
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    (sweep_dir,) = (repo / "sweeps").iterdir()
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["status"] for r in records} == {"SUCCESS"}, records
    assert {r["host"] for r in records} == {"mlft1"}
    for record in records:
        # Run in the container's project directory by its Python, each trial with an output directory of its own.
        assert f"--augment={record['params']['augment']} --out_dir=" in record["command"], record["command"]
        assert record["command"].split()[1] == "train.py" and record["command"].endswith(f"/{record['trial']}/out")
        assert [p["step"] for p in record["history"] if "val_loss" in p["values"]] == [1, 2, 3, 4, 5]
    assert "ranked by val_loss (min)" in sweep.stdout
