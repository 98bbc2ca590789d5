"""The test hosts themselves (testbed/testhosts.py): SSH, hostnames, Docker, network, images."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import kombu
import pytest

from testbed.testhosts import BASE_IMAGE, TestHostCluster

HOSTS = (1, 2, 3)


def _free_port_hint() -> int:
    """A port unlikely to be in use on a test host (they run nothing but sshd)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 30, headers: dict[str, str] | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
                return resp.read()
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize("i", HOSTS)
def test_ssh_with_key_and_strict_host_key(test_hosts: TestHostCluster, i: int) -> None:
    host = test_hosts.host(i)
    result = test_hosts.ssh(i, "id -un; pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [host.user, str(host.home)]
    assert host.known_hosts_entry in test_hosts.known_hosts.read_text().splitlines()


def test_hostnames_differ_per_host(test_hosts: TestHostCluster) -> None:
    names = [test_hosts.ssh(i, "hostname", check=True).stdout.strip() for i in HOSTS]
    assert names == [test_hosts.host(i).hostname for i in HOSTS]
    assert len(set(names)) == 3
    assert socket.gethostname() not in names


@pytest.mark.parametrize("i", HOSTS)
def test_user_reaches_own_docker_over_ssh(test_hosts: TestHostCluster, i: int) -> None:
    host = test_hosts.host(i)
    result = test_hosts.ssh(i, 'echo "$DOCKER_HOST"; docker info --format "{{.Name}} {{.DockerRootDir}}"')
    assert result.returncode == 0, result.stderr
    docker_host, info = result.stdout.strip().splitlines()
    assert docker_host == host.docker_host
    name, root_dir = info.split()
    assert name == host.hostname  # the daemon shares the host's hostname
    assert root_dir == str(host.docker_socket.parent / "data")


def test_password_login_is_refused(test_hosts: TestHostCluster) -> None:
    cmd = test_hosts.ssh_command(1)
    cmd[cmd.index("-i") : cmd.index("-i") + 2] = []  # no key: only password auth would remain
    cmd += ["-o", "PreferredAuthentications=password,keyboard-interactive", "true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_host_network_container_reachable_from_other_namespaces(test_hosts: TestHostCluster) -> None:
    host2 = test_hosts.host(2)
    port = _free_port_hint()
    container = test_hosts.docker(2).containers.run(
        BASE_IMAGE,
        ["python3", "-m", "http.server", "--bind", host2.address, str(port)],
        network_mode="host",
        detach=True,
        remove=True,
        working_dir="/etc",
    )
    try:
        url = f"http://{host2.address}:{port}/hostname"
        # from the root namespace
        assert _wait_http(url).decode().strip() == host2.hostname
        # from host 1's namespace, over SSH as host 1's user
        fetch = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=10).read().decode())"
        result = test_hosts.ssh(1, f'python3 -c "{fetch}"')
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host2.hostname
        # not on host 1's address: the container lives on host 2 only
        connect = f"import socket; socket.create_connection(('{test_hosts.host(1).address}', {port}), 3)"
        assert test_hosts.ssh(1, f'python3 -c "{connect}"').returncode != 0
    finally:
        container.kill()  # python as pid 1 ignores SIGTERM


def test_unknown_host_key_is_refused(test_hosts: TestHostCluster, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    result = test_hosts.ssh(1, "true", known_hosts=empty)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_changed_host_key_is_refused(test_hosts: TestHostCluster, tmp_path: Path) -> None:
    # host 2's key recorded for host 1's address: a man in the middle, as ssh sees it
    h1, h2 = test_hosts.host(1), test_hosts.host(2)
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(h2.known_hosts_entry.replace(h2.address, h1.address, 1) + "\n")
    result = test_hosts.ssh(1, "true", known_hosts=wrong)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_docker_stop_and_start_keeps_images(test_hosts: TestHostCluster) -> None:
    test_hosts.stop_docker(3)
    assert test_hosts.ssh(3, "docker info >/dev/null 2>&1").returncode != 0
    test_hosts.start_docker(3)
    assert test_hosts.ssh(3, f"docker image inspect {BASE_IMAGE} >/dev/null").returncode == 0


def test_a_fake_program_is_on_one_host_only_and_gone_afterwards(test_hosts: TestHostCluster) -> None:
    with test_hosts.fake_program(2, "mlft-probe", "#!/bin/sh\necho probe on $(hostname)\n") as path:
        assert test_hosts.ssh(2, "mlft-probe", check=True).stdout == "probe on mlft2\n"
        assert test_hosts.ssh(1, "command -v mlft-probe").returncode != 0
        found = test_hosts.ssh(2, "command -v docker python3", check=True).stdout.split()
        assert len(found) == 2 and not any(f.startswith(str(path.parent)) for f in found), "the rest of PATH stays"
    assert not path.exists()
    assert test_hosts.ssh(2, "command -v mlft-probe").returncode != 0


def test_a_disconnected_host_is_unreachable_until_reconnected(test_hosts: TestHostCluster) -> None:
    host = test_hosts.host(3)
    test_hosts.disconnect(3)
    try:
        with pytest.raises(OSError):  # no route to host, or a timeout
            socket.create_connection((host.address, host.ssh_port), timeout=3).close()
    finally:
        test_hosts.reconnect(3)
    assert test_hosts.ssh(3, "hostname", check=True).stdout.strip() == "mlft3"


def test_rabbitmq_image_on_a_host(test_hosts: TestHostCluster, rabbitmq_image: str) -> None:
    host = test_hosts.host(2)
    container = test_hosts.docker(2).containers.run(
        rabbitmq_image,
        network_mode="host",
        detach=True,
        remove=True,
        environment={
            "RABBITMQ_DEFAULT_USER": "sweeper",
            "RABBITMQ_DEFAULT_PASS": "s3cret",
            "RABBITMQ_DEFAULT_VHOST": "sweep",
        },
    )
    try:
        auth = base64.b64encode(b"sweeper:s3cret").decode()
        overview = json.loads(
            _wait_http(
                f"http://{host.address}:15672/api/whoami", timeout=120, headers={"Authorization": f"Basic {auth}"}
            )
        )
        assert overview["name"] == "sweeper"
        with (
            kombu.Connection(f"amqp://sweeper:s3cret@{host.address}:5672/sweep", connect_timeout=10) as conn,
            conn.SimpleQueue("testhosts-roundtrip") as q,
        ):
            q.put({"n": 1})
            message = q.get(block=True, timeout=10)
            message.ack()
        assert message.payload == {"n": 1}
        # uids, not names: dockerd's ps reads the machine's /etc/passwd, not the image's
        uid = container.exec_run(["id", "-u", "rabbitmq"]).output.decode().strip()
        top = container.top(ps_args="-o pid,uid,comm")  # dockerd needs the pid column
        beams = [p[1] for p in top["Processes"] if "beam" in p[2]]
        assert beams and set(beams) == {uid} and uid != "0"
    finally:
        container.stop(timeout=10)
