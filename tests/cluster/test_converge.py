"""infrainit converges on hosts as a previous cluster left them, and ships what hosts without a registry lack.

- A second fresh clone (new secrets, passwords beginning with "-") against the hosts of a first one: the broker's
  data volume still holds the first clone's user and password; infrainit sets the new ones, removes nothing else,
  and a sweep runs.
- After ``./infra_clean.sh`` plus deleting the secrets file (what the file's header advises): the same.
- ``./infra_clean.sh --volumes --yes`` removes the broker's data volume too.
- Hosts with only the base image, the broker image on this machine and named without a tag
  (``--broker-image NAME``, meaning ``NAME:latest``): ``--image-source ship`` ships both and the broker runs; a
  broker image that Docker cannot run there is one line naming host and image, exit 2, no traceback.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import tarfile

import docker
import pytest

from mlframework.cluster.secrets import ClusterSecrets
from mlframework.cluster.services import BROKER_NAME, BROKER_VOLUME, LABEL_CLUSTER
from testbed.scripted import copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE, ensure_rabbitmq_image

GRID = "model: [svc]\nC: [1.0, 10.0]\n"


def _infrainit(repo, env, test_hosts, rabbitmq_image, cluster, master, *extra):
    hosts = ",".join(test_hosts.host(i).destination for i in (1, 2, 3))
    return run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        hosts,
        "-i",
        str(test_hosts.client_key),
        "-r",
        f"mlf-{cluster}",
        "-d",
        "sklearn_digits",
        "-m",
        str(master),
        "-w",
        str(master),
        "--base-image",
        BASE_IMAGE,
        "--broker-image",
        rabbitmq_image,
        "--image-source",
        "ship",
        "--cpu-slots",
        "2",
        "--cluster-name",
        cluster,
        *extra,
        env=env,
        timeout=900,
    )


def _sweep_succeeds(repo, env, results):
    sweep = run(repo, "scripts/run_tasks.sh", "run_training", "--results", results, env=env, timeout=600)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    (sweep_dir,) = (repo / results).iterdir()
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {row["status"] for row in rows} == {"SUCCESS"}


def _clone(tmp_path_factory, name):
    repo = copy_repo(tmp_path_factory.mktemp(name) / "repo")
    (repo / "projects" / "sklearn_digits" / "parameters.yml").write_text(GRID)
    return repo


def test_a_second_clone_and_deleted_secrets_take_over_the_hosts_of_a_first(
    test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory
):
    cluster = "mlft-converge"
    ensure_rabbitmq_image(docker.DockerClient(base_url=build_daemon_host), rabbitmq_image)  # ship checks it by id
    env = script_env(test_hosts, build_daemon_host)
    first, second = _clone(tmp_path_factory, "first"), _clone(tmp_path_factory, "second")
    try:
        result = _infrainit(first, env, test_hosts, rabbitmq_image, cluster, 2)
        assert result.returncode == 0, result.stdout + result.stderr
        # A new clone: new secrets, the same cluster name, the first broker still running with its volume.
        # Its passwords begin with "-", as one in 64 of token_urlsafe's do: rabbitmqctl must not read an option.
        fresh = ClusterSecrets.generate(cluster)
        dashed = dataclasses.replace(
            fresh, rabbitmq_password="-" + fresh.rabbitmq_password, flower_password="-" + fresh.flower_password
        )
        (second / ".mlframework").mkdir(exist_ok=True)
        dashed.save(second / ".mlframework" / "secrets.env")
        result = _infrainit(second, env, test_hosts, rabbitmq_image, cluster, 2)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "broker user mlf-mlft-converge and vhost set from the secrets file" in result.stdout
        _sweep_succeeds(second, env, "after-second-clone")

        # What the secrets file's header advises: infra_clean.sh, delete the file, infrainit again.
        clean = run(second, "./infra_clean.sh", env=env, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert test_hosts.docker(2).volumes.get(BROKER_VOLUME)  # the data stays without --volumes
        (second / ".mlframework" / "secrets.env").unlink()
        result = run(second, "scripts/infrainit.sh", "-f", env=env, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        _sweep_succeeds(second, env, "after-deleted-secrets")

        asked = run(second, "./infra_clean.sh", "--volumes", env=env, timeout=120)
        assert asked.returncode == 2 and "--yes" in asked.stderr and "broker data volume" in asked.stderr
        assert "Traceback" not in asked.stderr
    finally:
        cleaner = second if (second / "infra_clean.sh").exists() else first
        clean = run(cleaner, "./infra_clean.sh", "--volumes", "--yes", env=env, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"volume(s) {BROKER_VOLUME}" in clean.stdout, "the last project on the broker takes its data along"
    assert [
        v.name for v in test_hosts.docker(2).volumes.list() if v.name in (BROKER_VOLUME, f"{cluster}-broker-data")
    ] == []
    assert test_hosts.docker(2).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"}) == []


def _image_without_command(client, name):
    """A tiny image (one file, FROM scratch) with no command: Docker refuses to create a container of it."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for path, text in (("Dockerfile", b"FROM scratch\nCOPY marker /marker\n"), ("marker", b"x\n")):
            info = tarfile.TarInfo(path)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=name, rm=True)


def test_hosts_with_only_the_base_image_get_worker_and_broker_images_shipped(
    test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory
):
    cluster = "mlft-ship"
    builder = docker.DockerClient(base_url=build_daemon_host)
    ensure_rabbitmq_image(builder, rabbitmq_image)
    lab_image = "mlft-lab/rabbitmq"  # as people name an image of their own: no tag, which means :latest
    builder.images.get(rabbitmq_image).tag(lab_image, "latest")
    host3 = test_hosts.docker(3)
    broker_id = host3.images.get(rabbitmq_image).id
    host3.images.remove(rabbitmq_image, force=True)  # host 3 now has the base image only
    env = script_env(test_hosts, build_daemon_host)
    repo = _clone(tmp_path_factory, "ship")
    try:
        result = _infrainit(repo, env, test_hosts, lab_image, cluster, 3)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"shipping {lab_image} to 1 host(s)" in result.stdout
        assert "shipping mlframework-worker-mlft-ship:" in result.stdout
        assert host3.images.get(f"{lab_image}:latest").id == broker_id
        assert host3.containers.get(BROKER_NAME).image.id == broker_id
        _sweep_succeeds(repo, env, "shipped")
        again = run(repo, "scripts/infrainit.sh", "-f", env=env, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "shipping" not in again.stdout, "an image the host has (same id) is shipped again"

        # A broker image Docker cannot run on the master: one line naming the host and the image, exit 2. (A running
        # shared broker is kept whatever image a later infrainit names: this project, its last one, removes it first.)
        broken = "mlft-lab/no-command"
        _image_without_command(builder, broken)
        cleaned = run(repo, "./infra_clean.sh", env=env, timeout=300)
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        failed = run(repo, "scripts/infrainit.sh", "-f", "--broker-image", broken, env=env, timeout=600)
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert "Traceback" not in failed.stderr
        (line,) = [line for line in failed.stderr.splitlines() if line.strip()]
        assert line.startswith(f"mlframework: error: {test_hosts.host(3).destination}: ") and broken in line, line
        assert "no command specified" in line.lower() and f"docker run --rm {broken}" in line, line
    finally:
        clean = run(repo, "./infra_clean.sh", "--volumes", "--yes", env=env, timeout=300)
        if host3.images.list(name=lab_image) and not host3.images.list(name=rabbitmq_image):
            repository, tag = rabbitmq_image.rsplit(":", 1)
            host3.images.get(lab_image).tag(repository, tag)  # the name the tests after this one use
        for name in (lab_image, "mlft-lab/no-command"):
            with contextlib.suppress(docker.errors.APIError):  # a container clean-up missed keeps its image
                host3.images.remove(name)
        if not host3.images.list(name=rabbitmq_image):
            pytest.fail("the broker image is missing on host 3 for the tests after this one")
    assert clean.returncode == 0, clean.stdout + clean.stderr
