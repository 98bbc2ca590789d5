"""infrainit's preflight on real test hosts: a bad host is named, with its reason, before anything starts."""

from __future__ import annotations

import subprocess
import time

from mlframework.cluster.services import LABEL_CLUSTER
from testbed.scripted import copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE

# An address on the test hosts' bridge where no host is: connections to it time out.
NOBODY = "10.231.7.99"


def test_an_unreachable_host_fails_preflight_naming_only_it(test_hosts, build_daemon_host, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = script_env(test_hosts, build_daemon_host)
    started = time.monotonic()
    result = run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        f"{test_hosts.host(1).destination},mlft2@{NOBODY}",
        "-i",
        str(test_hosts.client_key),
        "-r",
        "mlf-preflight",
        "-d",
        "sklearn_digits",
        "-m",
        "1",
        "-w",
        "1,2",
        "--base-image",
        BASE_IMAGE,
        "--cluster-name",
        "mlft-preflight",
        "--connect-timeout",
        "3",
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert NOBODY in errors[0] and "preflight" in errors[0]
    assert test_hosts.host(1).address not in errors[0], "only the bad host is named"
    assert elapsed < 60, f"took {elapsed:.0f}s with a 3 s connect timeout"
    assert test_hosts.docker(1).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}=mlft-preflight"}) == []


def test_an_unknown_host_key_is_refused_unless_accepted(test_hosts, build_daemon_host, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    refused = _preflight_only(
        test_hosts, build_daemon_host, tmp_path, 2, {"MLFRAMEWORK_KNOWN_HOSTS": str(empty_known_hosts)}
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "host key unknown" in refused.stderr and test_hosts.host(2).address in refused.stderr
    assert empty_known_hosts.read_text() == "", "nothing is recorded without --accept-new-host-keys"


def _preflight_only(test_hosts, build_daemon_host, tmp_path, host: int, env_changes: dict[str, str]):
    repo = copy_repo(tmp_path / "repo")
    env = {**script_env(test_hosts, build_daemon_host), **env_changes}
    return run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        test_hosts.host(host).destination,
        "-i",
        str(test_hosts.client_key),
        "-r",
        "mlf-preflight",
        "-d",
        "sklearn_digits",
        "-w",
        "1",
        "-b",
        "127.0.0.1",
        "--base-image",
        BASE_IMAGE,
        "--cluster-name",
        "mlft-preflight",
        "--connect-timeout",
        "5",
        env=env,
        timeout=120,
    )


def test_a_changed_host_key_is_refused_always(test_hosts, build_daemon_host, tmp_path):
    forged_key = tmp_path / "forged"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(forged_key)], check=True, timeout=30)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"{test_hosts.host(2).address} {(tmp_path / 'forged.pub').read_text().split(' ', 2)[0]} "
        f"{(tmp_path / 'forged.pub').read_text().split(' ', 2)[1]}\n"
    )
    before = known_hosts.read_text()
    result = _preflight_only(test_hosts, build_daemon_host, tmp_path, 2, {"MLFRAMEWORK_KNOWN_HOSTS": str(known_hosts)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "host key CHANGED" in result.stderr and test_hosts.host(2).address in result.stderr
    assert known_hosts.read_text() == before, "the recorded key is never replaced"


def test_a_host_whose_docker_is_down_is_named_by_preflight(test_hosts, build_daemon_host, tmp_path):
    test_hosts.stop_docker(3)
    try:
        result = _preflight_only(test_hosts, build_daemon_host, tmp_path, 3, {})
    finally:
        test_hosts.start_docker(3)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert test_hosts.host(3).address in line and "Docker is not usable" in line, line


# What nvidia-smi -L prints on a host with one GPU; the test hosts' dockerd has no NVIDIA runtime.
FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = -L ] || { echo "fake nvidia-smi: only -L" >&2; exit 9; }
echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5f2c0f8e-3b1a-4c2d-9e8f-0123456789ab)'
"""


def test_a_gpu_host_without_the_nvidia_runtime_fails_preflight_naming_only_it(test_hosts, build_daemon_host, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = script_env(test_hosts, build_daemon_host)
    good, gpu = test_hosts.host(1), test_hosts.host(2)
    with test_hosts.fake_program(2, "nvidia-smi", FAKE_NVIDIA_SMI) as fake:
        assert test_hosts.ssh(2, "nvidia-smi -L", check=True).stdout.startswith("GPU 0: ")
        started = time.monotonic()
        result = run(
            repo,
            "scripts/infrainit.sh",
            "-a",
            f"{good.destination},{gpu.destination}",
            "-i",
            str(test_hosts.client_key),
            "-r",
            "mlf-gpu",
            "-d",
            "sklearn_digits",
            "-m",
            "1",
            "-w",
            "1,2",
            "--base-image",
            BASE_IMAGE,
            "--cluster-name",
            "mlft-gpu",
            env=env,
            timeout=120,
        )
        elapsed = time.monotonic() - started
    assert not fake.exists()
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert "preflight" in line and gpu.address in line and good.address not in line, line
    assert "NVIDIA Container Toolkit" in line and "nvdocker_install/" in line, line
    assert elapsed < 30, f"took {elapsed:.0f}s: preflight must fail before files, images or containers"
    for i in (1, 2, 3):
        assert test_hosts.docker(i).containers.list(all=True, filters={"label": LABEL_CLUSTER}) == []
    for i in (1, 2):
        assert test_hosts.ssh(i, "test -e mlf-gpu").returncode == 1, "nothing copied to the hosts either"


def test_infrainit_run_again_once_the_hosts_are_fixed_brings_the_cluster_up(
    test_hosts, rabbitmq_image, build_daemon_host, tmp_path
):
    repo = copy_repo(tmp_path / "repo")
    env = script_env(test_hosts, build_daemon_host)
    master, worker = test_hosts.host(2), test_hosts.host(3)
    infrainit = (
        "scripts/infrainit.sh",
        "-a",
        f"{master.destination},{worker.destination}",
        "-i",
        str(test_hosts.client_key),
        "-r",
        "mlf-rerun",
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
        "mlft-rerun",
        "--connect-timeout",
        "3",
    )
    try:
        test_hosts.disconnect(2)  # the master is off
        test_hosts.stop_docker(3)  # the worker's Docker is down
        try:
            failed = run(repo, *infrainit, env=env, timeout=120)
        finally:
            test_hosts.reconnect(2)
            test_hosts.start_docker(3)
        assert failed.returncode == 2, failed.stdout + failed.stderr
        (line,) = failed.stderr.strip().splitlines()
        assert "preflight failed on 2 host(s)" in line and master.address in line, line
        assert f"{worker.address}: Docker is not usable" in line, line

        again = run(repo, *infrainit, env=env, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        status = run(repo, "scripts/check_celery_status.sh", env=env, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        nodes = sorted(line.split()[1].rstrip(":") for line in status.stdout.splitlines() if line.startswith("->"))
        assert nodes == ["cpu@mlft2", "cpu@mlft3"], status.stdout
    finally:
        if (repo / "infra_clean.sh").exists():
            clean = run(repo, "./infra_clean.sh", env=env, timeout=300)
            assert clean.returncode == 0, clean.stdout + clean.stderr
        for i in (2, 3):
            assert (
                test_hosts.docker(i).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}=mlft-rerun"}) == []
            )
