"""One SSH connection to a host whose sshd runs with OpenSSH's defaults (MaxSessions 10).

Many parallel Docker calls, commands and file copies on one HostSession must
all succeed: the session bounds its channels below sshd's limit by design.
A host that allows fewer channels than that is named, with the cause, in one line.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from mlframework.cluster.hosts import Host
from mlframework.cluster.ssh.channels import CHANNELS_PER_CONNECTION
from mlframework.cluster.ssh.remote import HostSession, SSHOptions
from mlframework.exceptions import HostError


def _session(test_hosts, i: int) -> HostSession:
    h = test_hosts.host(i)
    host = Host(h.address, user=h.user, port=h.ssh_port)
    return HostSession(
        host, SSHOptions(key_filename=str(test_hosts.client_key), known_hosts=str(test_hosts.known_hosts))
    )


def test_forty_parallel_docker_calls_commands_and_copies_share_one_connection(test_hosts, tmp_path: Path):
    source = tmp_path / "tree"
    for n in range(30):
        (source / f"d{n % 3}").mkdir(parents=True, exist_ok=True)
        (source / f"d{n % 3}" / f"f{n}.txt").write_text(f"file {n}\n" * 50)
    with _session(test_hosts, 1) as session:
        docker = session.docker()

        def work(n: int) -> str:
            kind = n % 4
            if kind == 0:
                return str(len(docker.containers.list(all=True)))
            if kind == 1:
                return docker.images.get(test_hosts.base_image).id
            if kind == 2:
                return session.run(f"echo {n}", timeout=60).stdout.strip()
            return str(docker.info()["ID"])

        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(work, range(40)))
            copied = session.sync_tree(source, session.remote_path("stock-sshd-tree"))
        assert [results[n] for n in range(2, 40, 4)] == [str(n) for n in range(2, 40, 4)]
        assert copied == 30
        assert session.run("ls ~/stock-sshd-tree/d1 | wc -l").stdout.strip() == "10"
        session.run("rm -rf ~/stock-sshd-tree")


def test_a_host_allowing_fewer_channels_than_we_use_is_named_with_the_cause(test_hosts):
    # Host 3's sshd with MaxSessions 2: the connection opens, its third channel is refused.
    limit = f"MaxSessions {CHANNELS_PER_CONNECTION - 5}"
    with test_hosts.sshd_option(3, limit), _session(test_hosts, 3) as session:
        docker = session.docker()

        def work(n: int) -> object:
            return docker.containers.list() if n % 2 else session.run("sleep 1", timeout=60)

        with pytest.raises(HostError) as caught, concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(work, range(8)))
    message = str(caught.value)
    assert message.startswith(f"{test_hosts.host(3).destination}: ")
    assert "sshd refused a new session channel" in message and "MaxSessions" in message
    assert "\n" not in message
