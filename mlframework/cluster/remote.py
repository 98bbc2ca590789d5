"""How hosts are reached: SSH (Fabric/paramiko) sessions, file sync and Docker over SSH.

A :class:`HostSession` runs commands, copies files and gives a docker SDK
client for one host; the local machine (``local`` in ``-m``/``-w``) gets the
same interface without SSH. Services never open connections themselves: the
bootstrapper hands them a session (the skypilot ``CommandRunner`` habit).

Host keys are always checked: against ``~/.ssh/known_hosts`` (or the file
given), an unknown key is refused unless new keys were explicitly accepted
(then it is recorded, like ``StrictHostKeyChecking=accept-new``), and a
changed key is refused always. The docker client rides the same checked SSH
connection (``docker system dial-stdio`` on the host), so it needs no Docker
TCP port and no second trust decision.

One SSH connection per host, and a bounded number of channels on it. sshd
refuses a connection's channel beyond ``MaxSessions`` (OpenSSH's default: 10),
and every command, the SFTP client and every HTTP connection of the docker SDK
is one channel. So each purpose has a fixed share, and the shares add up to
:data:`CHANNELS_PER_CONNECTION` (7), below 10 with room for a channel whose
close sshd has not yet processed:

* commands: at most :data:`COMMAND_CHANNELS` at once (a semaphore; more wait);
* files: one SFTP channel, opened once and reused;
* Docker: a connection pool of :data:`DOCKER_CHANNELS` that *blocks* when all
  are busy (the docker SDK's own pool opens a new channel instead, and keeps up
  to 10 idle ones open: that alone exhausted a stock sshd). A log stream holds
  one Docker channel while it is followed.

Parallelism *across* hosts is unbounded by this; more connections per host
would meet sshd's ``MaxStartups`` (10:30:100) instead, so there are none.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import logging
import os
import shlex
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import docker
import paramiko
import urllib3
from docker.transport.sshconn import SSHConnection, SSHConnectionPool, SSHHTTPAdapter
from fabric import Connection

from mlframework.cluster import diagnose
from mlframework.cluster.hosts import Host
from mlframework.exceptions import HostError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Files the hosts never need: caches, virtual environments, results, VCS data.
SYNC_EXCLUDE = ("__pycache__", ".git", ".venv", "results", ".mypy_cache", ".pytest_cache", ".hypothesis", "*.pyc")

# The docker API version we speak; Docker 20.10 (Debian bookworm's docker.io) and later support it.
DOCKER_API_VERSION = "1.41"

# SSH channels per connection, by purpose (see the module docstring): below OpenSSH's MaxSessions default of 10.
COMMAND_CHANNELS = 3
SFTP_CHANNELS = 1
DOCKER_CHANNELS = 3
CHANNELS_PER_CONNECTION = COMMAND_CHANNELS + SFTP_CHANNELS + DOCKER_CHANNELS
# Seconds a Docker call waits for one of the DOCKER_CHANNELS before it is reported as stuck.
DOCKER_CHANNEL_WAIT = 300.0


def is_channel_refusal(exc: BaseException) -> bool:
    """Whether paramiko says sshd would not open a channel.

    ``ChannelException(2, 'Connect failed')``, or, when several threads open channels at once and
    another took the transport's saved exception, ``SSHException('Unable to open channel.')``.
    """
    return isinstance(exc, paramiko.ChannelException) or (
        isinstance(exc, paramiko.SSHException) and "Unable to open channel" in str(exc)
    )


def channel_refused(host: str, purpose: str) -> HostError:
    """The error for a channel sshd would not open (``ChannelException(2, 'Connect failed')``)."""
    return HostError(
        host,
        f"sshd refused a new session channel for {purpose}: MaxSessions (or a ForceCommand/"
        f"PermitTTY policy) in its sshd_config allows fewer than the {CHANNELS_PER_CONNECTION} "
        "channels per connection mlframework uses",
    )


@dataclass(frozen=True)
class SSHOptions:
    """How to authenticate and whom to trust."""

    key_filename: str | None = None  # -i; None: the SSH agent and ~/.ssh/id_* keys
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    accept_new_host_keys: bool = False  # record unknown host keys instead of refusing them
    connect_timeout: float = 10.0  # seconds until an unreachable host is reported


@dataclass
class CommandOutput:
    """What a command run on a host printed and how it exited."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


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


def _fnmatch_any(name: str, patterns: Iterable[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def local_manifest(root: Path, exclude: Sequence[str] = SYNC_EXCLUDE) -> dict[str, tuple[str, int]]:
    """``relative path -> (sha256, mode)`` of every file under ``root``."""
    manifest: dict[str, tuple[str, int]] = {}
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _fnmatch_any(d, exclude))
        for filename in sorted(filenames):
            if _fnmatch_any(filename, exclude):
                continue
            path = Path(directory) / filename
            if not path.is_file():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            manifest[path.relative_to(root).as_posix()] = (digest, stat.S_IMODE(path.stat().st_mode))
    return manifest


# Runs on the host with its python3: prints the manifest of a directory as JSON.
# (No rsync: hosts may not have it, and this needs nothing but python3.)
_REMOTE_MANIFEST = r"""
import hashlib, json, os, stat, sys
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        try:
            with open(p, "rb") as h:
                out[os.path.relpath(p, root)] = [hashlib.sha256(h.read()).hexdigest(), stat.S_IMODE(os.stat(p).st_mode)]
        except OSError:
            pass
print(json.dumps(out))
"""


class HostSession:
    """Commands, files and Docker on one host; use as a context manager."""

    def __init__(self, host: Host, options: SSHOptions) -> None:
        self.host = host
        self.options = options
        self._connection: Connection | None = None
        self._docker: docker.DockerClient | None = None
        self._home: str | None = None
        self._lock = threading.Lock()
        self._commands = threading.BoundedSemaphore(COMMAND_CHANNELS)  # see the module docstring
        self._sftp_client: Any = None

    # -- connection ---------------------------------------------------------

    def connect(self) -> HostSession:
        """Open the SSH connection (nothing for the local host); raises :class:`HostError`."""
        if self.host.is_local or self._connection is not None:
            return self
        connect_kwargs: dict[str, Any] = {"allow_agent": True}
        if self.options.key_filename:
            connect_kwargs["key_filename"] = [os.path.expanduser(self.options.key_filename)]
            # Only the key given: an agent full of keys would hit sshd's MaxAuthTries first.
            connect_kwargs["look_for_keys"] = False
        connection = Connection(
            self.host.address,
            user=self.host.user,
            port=self.host.port,
            connect_timeout=self.options.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        client = connection.client
        # Fabric trusts unknown hosts by default (AutoAddPolicy); we decide ourselves.
        client.get_host_keys().clear()
        known_hosts = Path(os.path.expanduser(self.options.known_hosts or "~/.ssh/known_hosts"))
        if known_hosts.exists():
            client.load_host_keys(str(known_hosts))
        else:
            known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            client._host_keys_filename = str(known_hosts)  # where AutoAddPolicy records new keys
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if self.options.accept_new_host_keys else paramiko.RejectPolicy()
        )
        try:
            connection.open()
        except paramiko.BadHostKeyException:
            raise HostError(
                str(self.host),
                f"host key CHANGED (does not match {known_hosts}); refusing to connect. "
                "If the host was reinstalled, remove its old key with: "
                f"ssh-keygen -f {known_hosts} -R {self.host.address}",
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostError(
                    str(self.host),
                    f"host key unknown (not in {known_hosts}); connect once with ssh to check it, "
                    "or pass --accept-new-host-keys",
                ) from None
            if isinstance(exc, paramiko.AuthenticationException):
                key = self.options.key_filename or "the SSH agent / default keys"
                raise HostError(str(self.host), f"SSH authentication failed with {key}") from None
            raise HostError(str(self.host), f"SSH failed: {exc}") from None
        except TimeoutError:
            raise HostError(
                str(self.host), f"SSH connection timed out after {self.options.connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise HostError(str(self.host), f"cannot reach SSH port {self.host.port}: {exc.strerror or exc}") from None
        self._connection = connection
        return self

    def close(self) -> None:
        """Close the docker client and the SSH connection."""
        if self._docker is not None:
            try:
                self._docker.close()
            except Exception:  # closing a half-dead tunnel must not hide the real error
                log.debug("closing docker client of %s failed", self.host, exc_info=True)
            self._docker = None
        self._sftp_client = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> HostSession:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- commands -----------------------------------------------------------

    def run(
        self, command: str, *, timeout: float = 120, check: bool = True, stdin: bytes | None = None
    ) -> CommandOutput:
        """Run a shell command on the host; with ``check`` a failure raises :class:`HostError`."""
        if self.host.is_local:
            try:
                process = subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise HostError(str(self.host), f"command timed out after {timeout:g}s: {command}") from None
            output = CommandOutput(
                command,
                process.returncode,
                process.stdout.decode(errors="replace"),
                process.stderr.decode(errors="replace"),
            )
        else:
            self.connect()
            assert self._connection is not None
            try:
                with self._commands:
                    result = self._connection.run(
                        command,
                        hide=True,
                        warn=True,
                        timeout=timeout,
                        in_stream=io.BytesIO(stdin) if stdin is not None else False,
                    )
            except Exception as exc:  # invoke's CommandTimedOut and transport errors
                if is_channel_refusal(exc):
                    raise channel_refused(str(self.host), f"the command {command.split()[0]!r}") from None
                raise HostError(str(self.host), f"{type(exc).__name__} running {command!r}: {exc}") from None
            output = CommandOutput(command, result.exited, result.stdout, result.stderr)
        if check and not output.ok:
            detail = (output.stderr.strip() or output.stdout.strip()).splitlines()
            raise HostError(
                str(self.host), f"`{command}` exited with {output.exit_code}: {detail[-1] if detail else 'no output'}"
            )
        return output

    @property
    def home(self) -> str:
        """The login user's home directory on the host."""
        if self._home is None:
            self._home = self.run('printf %s "$HOME"', timeout=30).stdout.strip()
        return self._home

    def remote_path(self, relative: str) -> str:
        """``~/relative`` on the host, as an absolute path (bind mounts need one)."""
        return str(PurePosixPath(self.home) / relative)

    # -- files --------------------------------------------------------------

    def sync_tree(self, source: Path, destination: str, exclude: Sequence[str] = SYNC_EXCLUDE) -> int:
        """Make ``destination`` (absolute, on the host) hold ``source``'s files; returns how many were copied.

        Only files whose content or mode differ are sent; files the source no
        longer has are removed.
        """
        wanted = local_manifest(source, exclude)
        self.run(f"mkdir -p {shlex.quote(destination)}", timeout=30)
        present = self.remote_manifest(destination)
        to_copy = [path for path, value in wanted.items() if present.get(path) != value]
        to_delete = [path for path in present if path not in wanted]
        if self.host.is_local:
            import shutil

            for relative in to_copy:
                target = Path(destination) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / relative, target)
            for relative in to_delete:
                (Path(destination) / relative).unlink(missing_ok=True)
        else:
            sftp = self._sftp()
            made: set[str] = set()
            for relative in to_copy:
                remote_target = PurePosixPath(destination) / relative
                parent = str(remote_target.parent)
                if parent not in made:
                    self.run(f"mkdir -p {shlex.quote(parent)}", timeout=30)
                    made.add(parent)
                sftp.put(str(source / relative), str(remote_target))
                sftp.chmod(str(remote_target), wanted[relative][1])
            for relative in to_delete:
                sftp.remove(str(PurePosixPath(destination) / relative))
        log.info("%s: %d file(s) copied, %d removed under %s", self.host, len(to_copy), len(to_delete), destination)
        return len(to_copy) + len(to_delete)

    def remote_manifest(self, root: str) -> dict[str, tuple[str, int]]:
        """``relative path -> (sha256, mode)`` of every file under ``root`` on the host (empty if none)."""
        listing = self.run(f"python3 -c {shlex.quote(_REMOTE_MANIFEST)} {shlex.quote(root)}", timeout=120).stdout
        return {path: (value[0], value[1]) for path, value in json.loads(listing or "{}").items()}

    def download_tree(self, source: str, destination: Path) -> int:
        """Copy every file under ``source`` (absolute, on the host) into ``destination``; returns how many."""
        files = sorted(self.remote_manifest(source))
        sftp = None if self.host.is_local else self._sftp()
        for relative in files:
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            remote = str(PurePosixPath(source) / relative)
            if sftp is None:
                import shutil

                shutil.copy2(remote, target)
            else:
                sftp.get(remote, str(target))
        return len(files)

    def _sftp(self) -> Any:
        self.connect()
        assert self._connection is not None
        with self._lock:
            if self._sftp_client is None:
                try:
                    self._sftp_client = self._connection.sftp()  # Fabric keeps it: one channel, reused
                except paramiko.SSHException as exc:
                    if is_channel_refusal(exc):
                        raise channel_refused(str(self.host), "SFTP") from None
                    raise
            return self._sftp_client

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        """Write one file on the host (absolute path), creating its directory."""
        directory = str(PurePosixPath(path).parent)
        self.run(
            f"mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(path)} && chmod {mode:o} {shlex.quote(path)}",
            stdin=content,
            timeout=60,
        )

    # -- docker -------------------------------------------------------------

    def docker(self) -> docker.DockerClient:
        """A docker SDK client for the host's daemon (over this SSH connection)."""
        with self._lock:
            if self._docker is not None:
                return self._docker
            if self.host.is_local:
                client = docker.from_env(version=DOCKER_API_VERSION, timeout=300)
            else:
                self.connect()
                assert self._connection is not None
                # use_ssh_client=True makes the SDK skip its own paramiko connection at construction;
                # we then mount an adapter that uses ours instead.
                client = docker.DockerClient(
                    base_url=f"ssh://{self.host.address}", version=DOCKER_API_VERSION, use_ssh_client=True, timeout=300
                )
                adapter = _SessionDockerAdapter(self._connection.client, str(self.host), timeout=300)
                client.api.mount("http+docker://ssh", adapter)
                client.api._custom_adapter = adapter
            try:
                client.ping()
            except HostError:
                raise
            except Exception as exc:
                raise HostError(str(self.host), f"Docker is not usable by this user: {_docker_reason(exc)}") from None
            self._docker = client
            return client


def _docker_reason(exc: Exception) -> str:
    text = str(exc)
    if "permission denied" in text.lower():
        return "permission denied on the Docker socket (add the user to the 'docker' group)"
    if "dial-stdio" in text or "command not found" in text.lower() or "not found" in text.lower():
        return f"the docker CLI or daemon is missing ({text.splitlines()[0] if text else type(exc).__name__})"
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class HostOutcome:
    """One host's result of a parallel step."""

    host: Host
    value: Any = None
    error: BaseException | None = None


class HostsFailed(HostError):
    """A step failed on some hosts; names each one and why (fabric's GroupException habit)."""

    def __init__(self, step: str, failures: list[HostOutcome]) -> None:
        self.step = step
        self.failures = failures
        reasons = "; ".join(_reason(outcome, step) for outcome in failures)
        Exception.__init__(self, f"{step} failed on {len(failures)} host(s): {reasons}")
        self.host = ", ".join(str(outcome.host) for outcome in failures)
        self.reason = reasons


def _reason(outcome: HostOutcome, step: str) -> str:
    error = outcome.error
    if isinstance(error, HostError):
        return str(error)
    if error is not None and is_channel_refusal(error):
        return str(channel_refused(str(outcome.host), step))
    assert error is not None
    # A paramiko or docker SDK fault: one line naming host and step, the traceback in a log file.
    return diagnose.record_unexpected(str(outcome.host), step, error)


def on_hosts(step: str, items: Sequence[T], action: Callable[[T], Any], max_workers: int = 16) -> list[Any]:
    """Run ``action`` on every item (a host or a session) at once; results in input order.

    Raises :class:`HostsFailed` naming every host that failed and why.
    """
    if not items:
        return []
    outcomes: list[HostOutcome | None] = [None] * len(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        futures = {pool.submit(action, item): index for index, item in enumerate(items)}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            target: Any = getattr(items[index], "host", items[index])
            try:
                outcomes[index] = HostOutcome(target, future.result())
            except Exception as exc:
                log.debug("%s failed on %s", step, target, exc_info=True)
                outcomes[index] = HostOutcome(target, error=exc)
    done = [outcome for outcome in outcomes if outcome is not None]
    failures = [outcome for outcome in done if outcome.error is not None]
    if failures:
        raise HostsFailed(step, failures)
    return [outcome.value for outcome in done]
