"""Docker over a host's checked SSH connection: the docker SDK riding ``docker system dial-stdio``.

The client needs no Docker TCP port and no second trust decision: it uses the
SSH client :class:`~mlframework.cluster.ssh.remote.HostSession` already connected
with its host-key policy, and at most :data:`~mlframework.cluster.ssh.channels.DOCKER_CHANNELS`
channels of it (a pool that blocks when all are busy).
"""

from __future__ import annotations

from typing import Any

import docker
import paramiko
import urllib3
from docker.transport.sshconn import SSHConnection, SSHConnectionPool, SSHHTTPAdapter

from mlframework.cluster.ssh.channels import DOCKER_CHANNEL_WAIT, DOCKER_CHANNELS, channel_refused, is_channel_refusal
from mlframework.exceptions import HostError

# The docker API version we speak; Docker 20.10 (Debian bookworm's docker.io) and later support it.
DOCKER_API_VERSION = "1.41"


class _BoundedSSHConnectionPool(SSHConnectionPool):
    """The docker SDK's pool of ``dial-stdio`` channels, never more than ``maxsize`` open (it blocks)."""

    def __init__(self, ssh_client: paramiko.SSHClient, timeout: int, maxsize: int, host: str) -> None:
        super().__init__(ssh_client=ssh_client, timeout=timeout, maxsize=maxsize, host=host)
        self.block = True  # wait for a free channel rather than open an 11th one
        self._host_name = host

    def _get_conn(self, timeout: float | None = None) -> Any:
        try:
            return super()._get_conn(DOCKER_CHANNEL_WAIT if timeout is None else timeout)
        except urllib3.exceptions.EmptyPoolError:
            raise HostError(
                self._host_name,
                f"all {self.pool.maxsize if self.pool else DOCKER_CHANNELS} Docker channels stayed busy for "
                f"{DOCKER_CHANNEL_WAIT:g}s",
            ) from None

    def _new_conn(self) -> Any:
        return _CheckedSSHConnection(self.ssh_transport, self.timeout, self._host_name)


class _CheckedSSHConnection(SSHConnection):
    """A ``docker system dial-stdio`` channel; a refused channel is a HostError naming the host."""

    def connect(self) -> None:
        try:
            super().connect()
        except paramiko.SSHException as exc:
            if is_channel_refusal(exc):
                raise channel_refused(str(self.ssh_host), "Docker") from None
            raise


class _SessionDockerAdapter(SSHHTTPAdapter):
    """The docker SDK's SSH adapter, riding an SSH client we already connected and checked."""

    def __init__(self, ssh_client: paramiko.SSHClient, host: str, timeout: int = 120) -> None:
        self._given_client = ssh_client
        super().__init__("ssh://mlframework", timeout=timeout, pool_connections=1, max_pool_size=DOCKER_CHANNELS)
        self._pool = _BoundedSSHConnectionPool(ssh_client, timeout, DOCKER_CHANNELS, host)

    def _create_paramiko_client(self, base_url: str) -> None:
        self.ssh_client = self._given_client
        self.ssh_params: dict[str, Any] = {}

    def _connect(self) -> None:  # already connected, with our host-key policy
        pass

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return self._pool  # one pool for every URL: the channel bound is per connection

    def close(self) -> None:
        self._pool.close()  # the SSH client is the session's: HostSession.close closes it


def docker_client(host: str, ssh_client: paramiko.SSHClient | None, address: str = "") -> docker.DockerClient:
    """A pinged docker SDK client: this machine's daemon (``ssh_client`` None) or one over ``ssh_client``.

    ``host`` names the host in errors, ``address`` is its address. A daemon
    that cannot be used is a :class:`~mlframework.exceptions.HostError` saying why.
    """
    if ssh_client is None:
        client = docker.from_env(version=DOCKER_API_VERSION, timeout=300)
    else:
        # use_ssh_client=True makes the SDK skip its own paramiko connection at construction;
        # we then mount an adapter that uses ours instead.
        client = docker.DockerClient(
            base_url=f"ssh://{address}", version=DOCKER_API_VERSION, use_ssh_client=True, timeout=300
        )
        adapter = _SessionDockerAdapter(ssh_client, host, timeout=300)
        client.api.mount("http+docker://ssh", adapter)
        client.api._custom_adapter = adapter
    try:
        client.ping()
    except HostError:
        raise
    except Exception as exc:
        raise HostError(host, f"Docker is not usable by this user: {_docker_reason(exc)}") from None
    return client


def _docker_reason(exc: Exception) -> str:
    text = str(exc)
    if "permission denied" in text.lower():
        return "permission denied on the Docker socket (add the user to the 'docker' group)"
    if "dial-stdio" in text or "command not found" in text.lower() or "not found" in text.lower():
        return f"the docker CLI or daemon is missing ({text.splitlines()[0] if text else type(exc).__name__})"
    return text.splitlines()[0] if text else type(exc).__name__
