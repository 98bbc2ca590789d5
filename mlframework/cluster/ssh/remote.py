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

One SSH connection per host, with a fixed share of its channels per purpose
(commands, SFTP, Docker): :mod:`mlframework.cluster.ssh.channels`. Docker rides it
through :mod:`mlframework.cluster.ssh.docker_ssh`; steps on many hosts at once go
through :mod:`mlframework.cluster.ssh.group`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shlex
import stat
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import paramiko
from fabric import Connection

from mlframework.cluster.hosts import Host
from mlframework.cluster.ssh.channels import COMMAND_CHANNELS, channel_refused, is_channel_refusal
from mlframework.cluster.ssh.docker_ssh import docker_client
from mlframework.exceptions import HostError

log = logging.getLogger(__name__)

# Files the hosts never need: caches, virtual environments, results, VCS data.
SYNC_EXCLUDE = ("__pycache__", ".git", ".venv", "results", ".mypy_cache", ".pytest_cache", ".hypothesis", "*.pyc")


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
            ssh_client = None
            if not self.host.is_local:
                self.connect()
                assert self._connection is not None
                ssh_client = self._connection.client
            client = docker_client(str(self.host), ssh_client, self.host.address)
            self._docker = client
            return client
