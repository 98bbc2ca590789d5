"""Test hosts on this machine: real SSH + Docker "machines" in network namespaces.

A :class:`TestHostCluster` is a Linux bridge plus, per host, a network namespace
joined to it by a veth pair, with its own hostname (UTS namespace), Unix user,
``sshd`` and ``dockerd``::

    root namespace: bridge <prefix>-br, 10.231.7.1/24
      ├── netns mlft1  eth0 10.231.7.11  hostname mlft1  user mlft1  sshd :22  dockerd
      ├── netns mlft2  eth0 10.231.7.12  ...
      └── netns mlft3  eth0 10.231.7.13  ...

    with TestHostCluster(count=3) as cluster:
        cluster.ssh(1, "hostname")               # CompletedProcess, strict host keys
        cluster.docker(2).containers.run(...)    # docker SDK client on host 2's daemon
        cluster.client_key, cluster.known_hosts  # for Fabric / ssh / infrainit

Each host's ``sshd`` accepts only the generated client key (ed25519) for that
host's user and sets ``DOCKER_HOST`` to the host's own daemon (``SetEnv``), so
whatever runs over SSH - and so Fabric, and so ``scripts/infrainit.sh`` - sees
one machine with one Docker engine.  The hosts share this machine's filesystem;
what one host has that the others lack goes into its ``bin_dir``, first on the
``PATH`` of its SSH sessions (``fake_program``: an ``nvidia-smi`` on one host).  Containers with host networking live on
the host's address.  Processes started over SSH inherit the host's hostname, so
Celery node names differ per host; ``dockerd`` shares it too, so host-network
containers get it as well.

Images cannot be pulled here: :func:`ensure_base_image` makes a Debian bookworm
image with debootstrap and :func:`ensure_rabbitmq_image` builds
``testbed/images/rabbitmq-debian`` on top of it.  Both are built once per machine,
kept as ``docker save`` tarballs under :data:`CACHE_DIR` and ``docker load``-ed
into each daemon that needs them.

Lifecycle: ``start()`` -> [``stop_docker(i)`` / ``start_docker(i)``, ``disconnect(i)`` /
``reconnect(i)``, ``fake_program(i, ...)``, ``fake_gpus(i, n)``] -> ``stop()``.
``stop()`` tears everything down (containers, daemons, sshd, namespaces, links,
users, cgroups, mounts, files) and carries on past errors; it also runs at
interpreter exit.  :func:`cleanup_stale` removes what a crashed run left behind.
Every wait is bounded.  Root only.

No NAT by default: the hosts reach each other and the root namespace (and the
root namespace reaches them), nothing else - not even DNS, so software that
looks its own hostname up (Python's ``socket.getfqdn()``, Erlang) fails fast
instead of waiting for a resolver.  ``TestHostCluster(nat=True)`` adds a
default route via the bridge and an iptables MASQUERADE rule, so that processes
on the hosts (pip, apt) reach the package registries (and the machine's DNS
resolver) through the root namespace.

Errors: everything raises :class:`TestHostError` with the host and command at fault.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Debian packages the test hosts need (``ensure_packages`` installs the missing ones).
PACKAGES = ("docker.io", "openssh-server", "openssh-client", "debootstrap", "iproute2")

#: Image tarballs (``docker save``), kept between runs on the same machine.
CACHE_DIR = Path(os.environ.get("MLFT_IMAGE_CACHE", "/var/cache/mlframework-test"))

#: Locks and state of running clusters (``cleanup_stale`` reads them).
STATE_DIR = Path("/run/mlframework-test")

BASE_IMAGE = "mlframework-test/base:bookworm"
RABBITMQ_IMAGE = "mlframework-test/rabbitmq:bookworm"
RABBITMQ_CONTEXT = Path(__file__).parent / "images" / "rabbitmq-debian"

# Marks the users we create, so cleanup never touches anyone else's.
_USER_COMMENT = "mlframework test host"
# Label on images we make: the recipe they were made from (a changed recipe rebuilds).
_KEY_LABEL = "org.mlframework.test.recipe"
_HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_SSHD = "/usr/sbin/sshd"
_SFTP_SERVER = "/usr/lib/openssh/sftp-server"


class TestHostError(RuntimeError):
    """A test host could not be set up, reached or torn down; the message says which and why."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------- helpers


def _run(
    cmd: Sequence[str], *, timeout: float = 60, check: bool = True, input: bytes | None = None, what: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a time limit; on failure raise TestHostError naming it."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        raise TestHostError(f"{what or cmd[0]}: `{' '.join(cmd)}` did not finish in {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise TestHostError(f"{what or cmd[0]}: {cmd[0]} is not installed (run ensure_packages())") from exc
    out = subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )
    if check and out.returncode != 0:
        raise TestHostError(
            f"{what or cmd[0]}: `{' '.join(cmd)}` exited {out.returncode}: {(out.stderr or out.stdout).strip()[-2000:]}"
        )
    return out


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestHostError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_pids(pids: Sequence[int], timeout: float = 10) -> None:
    """SIGKILL ``pids`` and wait (bounded) until they are gone."""
    pids = [p for p in set(pids) if p > 1 and p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a path unique to one run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _netns_pids(netns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", netns], check=False, timeout=20)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def _unmount_under(root: Path) -> None:
    """Unmount (lazily) every mount point below ``root``, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        _run(["umount", "-l", point], check=False, timeout=20)


def _remove_tree(root: Path) -> None:
    """Remove ``root`` after unmounting what is below it, never crossing into another filesystem."""
    if not root.exists():
        return
    _unmount_under(root)
    # --one-file-system: a mount we missed (a container's bind mount of /, say) is
    # left alone instead of being emptied.
    _run(["rm", "-rf", "--one-file-system", str(root)], check=False, timeout=120)


def _cgroup_dirs(name: str) -> list[Path]:
    """Our cgroup ``name`` in each mounted hierarchy (v1) or in the unified one (v2)."""
    base = Path("/sys/fs/cgroup")
    found = [d / name for d in base.iterdir() if (d / name).is_dir()] if base.is_dir() else []
    if (base / name).is_dir():
        found.append(base / name)
    return found


def _remove_cgroup(name: str) -> None:
    """Kill every process left in cgroup ``name`` (containers of a dead daemon), then remove it."""
    for top in _cgroup_dirs(name):
        dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True)
        dirs.append(top)
        pids = []
        for d in dirs:
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (d / "cgroup.procs").read_text().split()]
        _kill_pids(pids)
        for d in dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


def _iptables(*args: str) -> bool:
    if not shutil.which("iptables"):
        return False
    return _run(["iptables", "-w", "10", *args], check=False, timeout=30).returncode == 0


# --------------------------------------------------------------------------- packages


def _missing_packages(packages: Sequence[str]) -> list[str]:
    missing = []
    for pkg in packages:
        out = _run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False, timeout=30)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def ensure_packages(packages: Sequence[str] = PACKAGES, timeout: float = 900) -> list[str]:
    """Install the Debian packages among ``packages`` that are missing; return those installed.

    Services in them (docker, ssh) must not start: the test hosts run daemons of
    their own.  So a ``/usr/sbin/policy-rc.d`` that forbids starts (exit 101) is put
    in place for the install, and removed again only if we created it.
    """
    if not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        raise TestHostError("the test hosts need a Debian system with apt-get")
    missing = _missing_packages(packages)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise TestHostError(f"packages {' '.join(missing)} are missing and installing them needs root")
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created = True
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    deadline = time.monotonic() + timeout
    try:
        log.info("installing %s", " ".join(missing))
        _run(
            [*env_cmd, "apt-get", "-o", "DPkg::Lock::Timeout=120", "update", "-qq"],
            timeout=min(300, timeout),
            what="apt-get update",
        )
        _run(
            [
                *env_cmd,
                "apt-get",
                "-o",
                "DPkg::Lock::Timeout=120",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                *missing,
            ],
            timeout=max(60, deadline - time.monotonic()),
            what="apt-get install",
        )
    finally:
        if created:
            policy.unlink(missing_ok=True)
    still = _missing_packages(missing)
    if still:
        raise TestHostError(f"apt-get could not install {' '.join(still)}")
    return missing


# --------------------------------------------------------------------------- dockerd


class Dockerd:
    """One private ``dockerd`` (own data/exec root, pidfile, socket, cgroup parent).

    In a test host's network and UTS namespaces when ``netns``/``uts_pid`` are given,
    in the root namespace otherwise (the image-build daemon).
    """

    def __init__(
        self, root: Path, *, cgroup: str, netns: str | None = None, uts_pid: int | None = None, group: str | None = None
    ) -> None:
        self.root = root
        self.cgroup = cgroup
        self.netns = netns
        self.uts_pid = uts_pid
        self.group = group
        self.socket = root / "docker.sock"
        self.log_path = root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []  # more dockerd options (fake_gpus: an nvidia runtime)
        self.path_prefix: str | None = None  # a directory first on dockerd's PATH (fake_gpus: its GPU hook)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def command(self) -> list[str]:
        cmd: list[str] = []
        if self.netns:
            # nsenter, not `ip netns exec`: the latter remounts /sys in a new mount
            # namespace, which hides the cgroup mounts dockerd needs.
            cmd += ["nsenter", f"--net=/run/netns/{self.netns}"]
            if self.uts_pid:
                cmd.append(f"--uts=/proc/{self.uts_pid}/ns/uts")
            cmd.append("--")
        cmd += [
            "dockerd",
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "docker.pid"),
            "-H",
            self.url,
            # No docker0 bridge and no iptables rules: the daemons share the root
            # namespace's netfilter tables with each other and with the machine.
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            # Containers of this daemon in a cgroup of their own, so teardown can find them.
            "--cgroup-parent",
            f"/{self.cgroup}",
            "--userland-proxy=false",
            "--shutdown-timeout",
            "5",
            "--log-level",
            "warn",
        ]
        if self.group:
            cmd += ["--group", self.group]  # socket root:<group> 0660: the host's user may use it
        return cmd + self.extra_args

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        logf = open(self.log_path, "ab")
        try:
            # Own session: a Ctrl-C to pytest must not kill daemons behind teardown's back.
            env = dict(os.environ)
            if self.path_prefix:
                env["PATH"] = f"{self.path_prefix}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        finally:
            logf.close()

    def wait_ready(self, timeout: float = 60) -> None:
        import docker

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise TestHostError(f"dockerd {self.socket} exited: {_tail(self.log_path)}")
            if not self.socket.exists():
                return False
            try:
                docker.DockerClient(base_url=self.url, timeout=5).ping()
                return True
            except Exception:
                return False

        _wait_until(ready, timeout, f"dockerd {self.socket}")

    def client(self, timeout: float = 300) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (dockerd stops its containers), SIGKILL past ``timeout``; then kill leftovers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("dockerd %s ignored SIGTERM for %.0f s; killing it", self.socket, timeout)
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
        self.proc = None
        # containerd and its shims, if dockerd died without stopping them, and containers.
        _kill_pids(_pids_mentioning(str(self.root) + "/"))
        _remove_cgroup(self.cgroup)
        _unmount_under(self.root)
        with contextlib.suppress(OSError):
            self.socket.unlink()


# --------------------------------------------------------------------------- images


def _docker_client(client_or_socket: Any) -> Any:
    import docker

    if isinstance(client_or_socket, docker.DockerClient):
        return client_or_socket
    path = str(client_or_socket)
    url = path if path.startswith(("unix://", "tcp://")) else f"unix://{path}"
    return docker.DockerClient(base_url=url, timeout=600)


def _has_image(client: Any, name: str, key: str) -> bool:
    import docker

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return (image.labels or {}).get(_KEY_LABEL) == key


_cache_lock_held = threading.local()


@contextlib.contextmanager
def _cache_lock(timeout: float = 1800) -> Iterator[None]:
    """One image builder per machine at a time (another test run may be building the same).

    Reentrant within this process: the RabbitMQ build makes the base image under it.
    """
    if getattr(_cache_lock_held, "depth", 0):
        _cache_lock_held.depth += 1
        try:
            yield
        finally:
            _cache_lock_held.depth -= 1
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as fh:
        _wait_until(lambda: _try_flock(fh), timeout, f"lock on image cache {CACHE_DIR}", 1.0)
        _cache_lock_held.depth = 1
        try:
            yield
        finally:
            _cache_lock_held.depth = 0


def _try_flock(fh: Any) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _save(client: Any, name: str, tarball: Path) -> None:
    tmp = tarball.with_suffix(".part")
    with open(tmp, "wb") as fh:
        for chunk in client.images.get(name).save(named=True):
            fh.write(chunk)
    os.replace(tmp, tarball)


def _load(client: Any, tarball: Path) -> None:
    with open(tarball, "rb") as fh:
        client.images.load(fh)


def debian_mirror(suite: str = "bookworm") -> str:
    """The Debian mirror apt uses for ``suite`` (/etc/apt/sources.list, then sources.list.d)."""
    paths = [Path("/etc/apt/sources.list")]
    with contextlib.suppress(OSError):
        paths += sorted(Path("/etc/apt/sources.list.d").iterdir())
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".list" or path.name == "sources.list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
        elif path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "deb").split():
                    return fields.get("URIs", "").split()[0]
    return "http://deb.debian.org/debian"


_BASE_INCLUDE = "python3,python3-venv,python3-pip,ca-certificates"


def _base_key(suite: str) -> str:
    ca = _HOST_CA_BUNDLE.read_bytes() if _HOST_CA_BUNDLE.exists() else b""
    recipe = f"v1 {suite} minbase {_BASE_INCLUDE} {debian_mirror(suite)}".encode()
    return hashlib.sha256(recipe + hashlib.sha256(ca).digest()).hexdigest()[:16]


def _build_base_tarball(tarball: Path, name: str, key: str, suite: str, client: Any) -> None:
    """debootstrap a rootfs, ``docker import`` it into ``client``, ``docker save`` it to ``tarball``."""
    mirror = debian_mirror(suite)
    work = Path(tempfile.mkdtemp(prefix="mlft-debootstrap-", dir="/var/tmp"))
    try:
        rootfs = work / "rootfs"
        log.info("debootstrap %s from %s (about 75 s)", suite, mirror)
        _run(
            ["debootstrap", "--variant=minbase", f"--include={_BASE_INCLUDE}", suite, str(rootfs), mirror],
            timeout=900,
            what="debootstrap",
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        if _HOST_CA_BUNDLE.exists():
            # The package registries' TLS is only trusted with this machine's CA bundle.
            shutil.copyfile(_HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        rootfs_tar = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(rootfs_tar), "."], timeout=300, what="tar rootfs")
        repo, tag = name.rsplit(":", 1)
        client.api.import_image(
            src=str(rootfs_tar),
            repository=repo,
            tag=tag,
            changes=[
                f"LABEL {_KEY_LABEL}={key}",
                "ENV LANG=C.UTF-8",
                # pip from PyPI (in a venv) ignores the system bundle unless told.
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                'CMD ["/bin/bash"]',
            ],
        )
        _save(client, name, tarball)
    finally:
        _remove_tree(work)


def ensure_base_image(client_or_socket: Any, name: str = BASE_IMAGE, suite: str = "bookworm") -> str:
    """Make sure the daemon has ``name``: a minimal Debian ``suite`` with python3, venv, pip.

    Loaded from the cached tarball in :data:`CACHE_DIR`; built (debootstrap, about
    75 s) into that cache first when there is none.  Returns the image name.
    """
    client = _docker_client(client_or_socket)
    key = _base_key(suite)
    if _has_image(client, name, key):
        return name
    tarball = CACHE_DIR / f"base-{suite}-{key}.tar"
    with _cache_lock():
        if not tarball.exists():
            _build_base_tarball(tarball, name, key, suite, client)
    if not _has_image(client, name, key):
        _load(client, tarball)
    return name


def _context_key(context: Path, base_key: str) -> str:
    h = hashlib.sha256(base_key.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def build_daemon(prefix: str = "mlft") -> Iterator[Dockerd]:
    """A private ``dockerd`` in the root namespace for ``docker build``, started; yields it.

    ``.url`` is its DOCKER_HOST, ``.client()`` a docker SDK client.

    Builds use host networking (``network_mode="host"``): RUN steps reach the
    package mirrors the way the machine does, without a docker0 bridge or NAT.
    """
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-build-", dir="/var/tmp"))
    daemon = Dockerd(root, cgroup=f"{prefix}-build-{root.name[-8:]}")
    try:
        daemon.start()
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()
        _remove_tree(root)


def ensure_rabbitmq_image(
    client_or_socket: Any, name: str = RABBITMQ_IMAGE, base: str = BASE_IMAGE, prefix: str = "mlft"
) -> str:
    """Make sure the daemon has ``name``: Debian's rabbitmq-server, see testbed/images/rabbitmq-debian.

    Built on a private root-namespace daemon (the test hosts have no way out)
    and cached like the base image.  Returns the image name.
    """
    client = _docker_client(client_or_socket)
    key = _context_key(RABBITMQ_CONTEXT, _base_key("bookworm"))
    if _has_image(client, name, key):
        return name
    tarball = CACHE_DIR / f"rabbitmq-bookworm-{key}.tar"
    with _cache_lock():
        if not tarball.exists():
            with build_daemon(prefix) as daemon:
                builder = daemon.client(timeout=1800)
                ensure_base_image(builder, base)
                log.info("building %s from %s", name, RABBITMQ_CONTEXT)
                try:
                    builder.images.build(
                        path=str(RABBITMQ_CONTEXT),
                        tag=name,
                        rm=True,
                        forcerm=True,
                        network_mode="host",
                        buildargs={"BASE": base},
                        labels={_KEY_LABEL: key},
                    )
                except Exception as exc:  # BuildError carries the log
                    lines = "".join(str(c.get("stream", c.get("error", ""))) for c in getattr(exc, "build_log", []))
                    raise TestHostError(f"building {name} failed: {exc}\n{lines[-3000:]}") from exc
                _save(builder, name, tarball)
    if not _has_image(client, name, key):
        _load(client, tarball)
    return name


# --------------------------------------------------------------------------- hosts


@dataclass
class TestHost:
    """One test host: what a test needs to reach it.  No I/O."""

    __test__ = False  # not a pytest test class

    index: int  # 1-based position in the cluster
    name: str  # netns name = hostname = user name, e.g. "mlft1"
    address: str  # its address on the bridge, e.g. "10.231.7.11"
    user: str  # Unix user that may log in (key only)
    home: Path  # that user's home directory
    docker_socket: Path  # its dockerd's socket (DOCKER_HOST over SSH)
    key_path: Path  # private client key authorized for ``user``
    known_hosts_entry: str  # "<address> ssh-ed25519 AAAA..." line
    ssh_port: int = 22
    root: Path = field(default=Path(), repr=False)  # everything of this host's lives here

    @property
    def bin_dir(self) -> Path:
        """Programs of this host only (its /usr/local/bin, as it were): first on its SSH sessions' PATH."""
        return self.root / "bin"

    @property
    def hostname(self) -> str:
        return self.name

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_socket}"

    @property
    def destination(self) -> str:
        """``user@address`` as ``ssh`` and ``infrainit.sh -a`` take it."""
        return f"{self.user}@{self.address}"


_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,8}$")


class TestHostCluster:
    """``count`` test hosts on a bridge; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        count: int = 3,
        subnet: str = "10.231.7.0/24",
        prefix: str = "mlft",
        *,
        nat: bool = False,
        workdir: Path | str | None = None,
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            # Interface names are at most 15 characters; users and netns take the prefix too.
            raise TestHostError(f"prefix {prefix!r}: use 2-9 lowercase letters/digits, starting with a letter")
        net = ipaddress.ip_network(subnet)
        if not 1 <= count <= 200 or net.num_addresses < 256:
            raise TestHostError(f"count {count} / subnet {subnet}: need 1..200 hosts in a /24 or larger")
        self.count = count
        self.subnet = net
        self.prefix = prefix
        self.nat = nat
        self.bridge = f"{prefix}-br"
        self.gateway = str(net.network_address + 1)
        self.workdir = Path(workdir) if workdir else None
        self.root: Path | None = None
        self.hosts: list[TestHost] = []
        self._sshd: dict[int, subprocess.Popen[bytes]] = {}
        self._dockerd: dict[int, Dockerd] = {}
        self._lock_fh: Any = None
        self._state: dict[str, Any] = {}
        self._started = False
        #: Image names once ``load_images()`` has put them on every host, else None.
        self.base_image: str | None = None
        self.rabbitmq_image: str | None = None

    # ------------------------------------------------------------------ public API

    @property
    def client_key(self) -> Path:
        """Private ed25519 key authorized on every host (``.pub`` beside it)."""
        return self._need_root() / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """known_hosts file with every host's key, for strict host-key checking."""
        return self._need_root() / "client" / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        """ssh_config with a ``Host <name>`` block per host (address, user, key, known_hosts)."""
        return self._need_root() / "client" / "ssh_config"

    def host(self, i: int) -> TestHost:
        """Host ``i`` (1-based)."""
        if not 1 <= i <= len(self.hosts):
            raise TestHostError(f"no test host {i}; there are {len(self.hosts)}")
        return self.hosts[i - 1]

    def ssh_command(self, i: int, *, known_hosts: Path | str | None = None) -> list[str]:
        """``ssh`` argv (without the remote command) for host ``i``, host keys checked strictly."""
        h = self.host(i)
        return [
            "ssh",
            "-F",
            "/dev/null",  # not root's ~/.ssh/config
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",  # only our key, not an agent's
            "-o",
            "BatchMode=yes",  # never prompt
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",  # an unknown or changed key is refused
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-p",
            str(h.ssh_port),
            h.destination,
        ]

    def ssh(
        self, i: int, command: str, *, timeout: float = 60, check: bool = False, known_hosts: Path | str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on host ``i`` as its user over SSH; stdout/stderr as text."""
        try:
            proc = subprocess.run(
                [*self.ssh_command(i, known_hosts=known_hosts), command],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise TestHostError(f"host {self.host(i).name}: `{command}` over SSH took over {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise TestHostError(
                f"host {self.host(i).name}: `{command}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            )
        return proc

    def docker(self, i: int, timeout: float = 300) -> Any:
        """docker SDK client on host ``i``'s daemon (its local socket)."""
        return self._dockerd_of(i).client(timeout)

    @contextlib.contextmanager
    def fake_program(self, i: int, name: str, script: str) -> Iterator[Path]:
        """``name`` on host ``i`` only: ``script`` (with its ``#!`` line) in its ``bin_dir``; removed on exit."""
        path = self.host(i).bin_dir / name
        path.write_text(script)
        try:
            path.chmod(0o755)
            yield path
        finally:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def fake_gpus(self, i: int, count: int = 1) -> Iterator[None]:
        """Host ``i`` with ``count`` fake NVIDIA GPUs for the block; its dockerd as it was afterwards.

        ``nvidia-smi`` on its PATH answers ``-L`` and ``--query-gpu`` (42 %, 1000 MiB each), and its dockerd is
        restarted with an ``nvidia`` runtime (plain runc) and a no-op ``nvidia-container-runtime-hook`` first on
        its PATH: dockerd then takes ``--gpus device=N`` requests (its NVIDIA device driver needs only that hook),
        so GPU worker containers start; they see no GPU. Restarting dockerd stops the host's containers.
        """
        h = self.host(i)
        hook_dir = h.root / "fake-nvidia"
        hook_dir.mkdir(exist_ok=True)
        hook = hook_dir / "nvidia-container-runtime-hook"
        hook.write_text("#!/bin/sh\ncat >/dev/null\nexit 0\n")  # runc hands it the container's state
        hook.chmod(0o755)
        smi = (
            "#!/bin/sh\n"
            f"n={count}\n"
            'case "$1" in\n'
            '  -L) i=0; while [ $i -lt $n ]; do echo "GPU $i: Fake GPU (UUID: GPU-fake-$i)"; i=$((i+1)); done ;;\n'
            '  --query-gpu=*) i=0; while [ $i -lt $n ]; do echo "$i, 42, 1000"; i=$((i+1)); done ;;\n'
            '  *) echo "fake nvidia-smi: $*" >&2; exit 9 ;;\n'
            "esac\n"
        )
        daemon = self._dockerd_of(i)
        with self.fake_program(i, "nvidia-smi", smi):
            try:
                self.stop_docker(i)
                daemon.extra_args, daemon.path_prefix = ["--add-runtime", "nvidia=runc"], str(hook_dir)
                self.start_docker(i)
                yield
            finally:
                self.stop_docker(i)
                daemon.extra_args, daemon.path_prefix = [], None
                self.start_docker(i)

    @contextlib.contextmanager
    def sshd_option(self, i: int, line: str) -> Iterator[None]:
        """Host ``i``'s sshd with one more sshd_config line (e.g. ``MaxSessions 2``) for the block.

        sshd re-reads its configuration on SIGHUP (it re-executes itself, same pid and hostname).
        """
        h = self.host(i)
        config = h.root / "sshd_config"
        original = config.read_text()
        try:
            config.write_text(line + "\n" + original)  # the first value of an sshd option wins
            self._reload_sshd(h)
            yield
        finally:
            config.write_text(original)
            self._reload_sshd(h)

    def _reload_sshd(self, h: TestHost) -> None:
        _run([_SSHD, "-t", "-f", str(h.root / "sshd_config")], what=f"sshd config of {h.name}")
        os.kill(self._sshd[h.index].pid, signal.SIGHUP)
        time.sleep(0.5)  # the old listener closes, the re-executed one binds again
        _wait_until(lambda: self._sshd_ready(h), 30, f"sshd of {h.name} after reload")

    def disconnect(self, i: int) -> None:
        """Cut host ``i`` off the bridge (its link down), as a host that is switched off or unplugged.

        Connections to it fail (no ARP answer: "no route to host" after a few
        seconds); its daemons and containers keep running.
        """
        h = self.host(i)
        _run(["ip", "link", "set", f"{h.name}-v", "down"], what=f"disconnect {h.name}")

    def reconnect(self, i: int, timeout: float = 30) -> None:
        """Undo :meth:`disconnect`; returns when host ``i``'s sshd answers again."""
        h = self.host(i)
        _run(["ip", "link", "set", f"{h.name}-v", "up"], what=f"reconnect {h.name}")
        _wait_until(lambda: _port_open(h.address, h.ssh_port), timeout, f"sshd of {h.name} after reconnect")

    def stop_docker(self, i: int, timeout: float = 30) -> None:
        """Stop host ``i``'s dockerd (and its containers), as a crashed or stopped engine."""
        self._dockerd_of(i).stop(timeout)

    def start_docker(self, i: int, timeout: float = 60) -> None:
        """(Re)start host ``i``'s dockerd; its images and stopped containers are kept."""
        d = self._dockerd_of(i)
        if d.proc is None or d.proc.poll() is not None:
            d.uts_pid = self._sshd[i].pid
            d.start()
            self._state["pids"].append(d.proc.pid)  # type: ignore[union-attr]
            self._write_state()
        d.wait_ready(timeout)

    def load_images(self, *, rabbitmq: bool = True) -> None:
        """Put ``BASE_IMAGE`` (and ``RABBITMQ_IMAGE``) on every host; built on first use per machine.

        Sets ``base_image`` / ``rabbitmq_image``.  Host 1 first (it may build into
        the cache), then the others in parallel from the cached tarball.  RabbitMQ
        first: its tarball holds the base layer, so the base image loads in a blink after it.
        """
        if rabbitmq:
            self.rabbitmq_image = self._on_every_host(
                lambda c: ensure_rabbitmq_image(c, RABBITMQ_IMAGE, BASE_IMAGE, prefix=self.prefix)
            )
        self.base_image = self._on_every_host(lambda c: ensure_base_image(c, BASE_IMAGE))

    def _on_every_host(self, fn: Callable[[Any], str]) -> str:
        result = fn(self.docker(1))
        with ThreadPoolExecutor(max_workers=max(1, len(self.hosts) - 1)) as pool:
            for r in pool.map(lambda h: fn(self.docker(h.index)), self.hosts[1:]):
                assert r == result
        return result

    def __enter__(self) -> TestHostCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ start

    def start(self, timeout: float = 120) -> TestHostCluster:
        """Create the bridge and the hosts; returns when every sshd and dockerd answers."""
        if self._started:
            return self
        if os.geteuid() != 0:
            raise TestHostError("test hosts need root (namespaces, users, daemons)")
        self._acquire_lock()
        self._started = True
        atexit.register(self.stop)
        t0 = time.monotonic()
        try:
            self._check_subnet_free()
            self.root = Path(
                tempfile.mkdtemp(prefix=f"{self.prefix}-hosts-", dir=str(self.workdir) if self.workdir else "/tmp")
            )
            # Users must traverse it to their homes and docker sockets.
            self.root.chmod(0o755)
            self._state = {
                "prefix": self.prefix,
                "root": str(self.root),
                "bridge": self.bridge,
                "pids": [],
                "users": [],
                "netns": [],
                "iptables": [],
                "cgroups": [],
            }
            self._write_state()
            self._make_client_key()
            self._make_bridge()
            for i in range(1, self.count + 1):
                self._make_host(i)
            self._write_client_files()
            for i in range(1, self.count + 1):
                self._start_sshd(i)
            for i in range(1, self.count + 1):
                h = self.host(i)
                _wait_until(lambda h=h: self._sshd_ready(h), timeout, f"sshd of {h.name}")
            for i in range(1, self.count + 1):
                self._start_dockerd(i)
            for i in range(1, self.count + 1):
                self._dockerd[i].wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("%d test hosts up in %.1f s under %s", self.count, time.monotonic() - t0, self.root)
        return self

    def _need_root(self) -> Path:
        if self.root is None:
            raise TestHostError("the cluster is not started")
        return self.root

    def _dockerd_of(self, i: int) -> Dockerd:
        self.host(i)
        return self._dockerd[i]

    def _acquire_lock(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fh = open(STATE_DIR / f"{self.prefix}.lock", "a+")
        if not _try_flock(fh):
            fh.close()
            raise TestHostError(
                f"another test-host cluster with prefix {self.prefix!r} is running "
                f"(lock {STATE_DIR / (self.prefix + '.lock')}); use another prefix and subnet"
            )
        self._lock_fh = fh
        # Whatever a crashed run with our prefix left would clash with our names.
        _cleanup_stale_locked(self.prefix)

    def _write_state(self) -> None:
        path = STATE_DIR / f"{self.prefix}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state))
        os.replace(tmp, path)

    def _check_subnet_free(self) -> None:
        out = _run(["ip", "-4", "-o", "addr", "show"], timeout=10).stdout
        for m in re.finditer(r"inet (\S+)", out):
            if ipaddress.ip_interface(m.group(1)).network.overlaps(self.subnet):
                raise TestHostError(
                    f"subnet {self.subnet} is already in use on this machine ({m.group(1)}); pass another subnet="
                )

    def _make_client_key(self) -> None:
        d = self._need_root() / "client"
        d.mkdir(mode=0o755)
        _run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.prefix}-tests", "-f", str(d / "id_ed25519")],
            what="ssh-keygen client key",
        )

    def _make_bridge(self) -> None:
        br = self.bridge
        _run(["ip", "link", "add", br, "type", "bridge"], what=f"bridge {br}")
        _run(["ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", br])
        _run(["ip", "link", "set", br, "up"])
        comment = ["-m", "comment", "--comment", f"{self.prefix}-testhosts"]
        rules: list[list[str]] = []
        if (
            Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
            and Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
        ):
            # br_netfilter sends bridged frames through FORWARD; a dockerd elsewhere on
            # the machine sets its policy to DROP, which would cut the hosts off each other.
            rules.append(["FORWARD", "-i", br, "-o", br, "-j", "ACCEPT", *comment])
        if self.nat:
            rules += [
                ["FORWARD", "-i", br, "-j", "ACCEPT", *comment],
                ["FORWARD", "-o", br, "-m", "state", "--state", "RELATED,ESTABLISHED", "-j", "ACCEPT", *comment],
                ["-t", "nat", "POSTROUTING", "-s", str(self.subnet), "!", "-o", br, "-j", "MASQUERADE", *comment],
            ]
            if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
                Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
                self._state["ip_forward_was"] = "0"
        for rule in rules:
            table = rule[:2] if rule[0] == "-t" else []
            chain_rule = rule[2:] if table else rule
            if _iptables(*table, "-I", *chain_rule):
                self._state["iptables"].append(table + chain_rule)
            elif self.nat:
                raise TestHostError(f"nat=True needs iptables: `iptables {' '.join(rule)}` failed")
        self._write_state()

    def _make_host(self, i: int) -> None:
        name = f"{self.prefix}{i}"
        address = str(self.subnet.network_address + 10 + i)
        root = self._need_root() / f"h{i}"
        home = root / "home"
        root.mkdir(mode=0o755)
        # network namespace + veth on the bridge
        self._state["netns"].append(name)
        self._write_state()
        _run(["ip", "netns", "add", name], what=f"netns {name}")
        outer, inner = f"{name}-v", f"{name}-p"
        _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner], what=f"veth {outer}")
        _run(["ip", "link", "set", outer, "master", self.bridge, "up"])
        _run(["ip", "link", "set", inner, "netns", name])
        _run(["ip", "-n", name, "link", "set", inner, "name", "eth0"])
        _run(["ip", "-n", name, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0"])
        _run(["ip", "-n", name, "link", "set", "eth0", "up"])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        if self.nat:
            # Without NAT no default route: a lookup of a name that is not in
            # /etc/hosts (DNS) then fails at once instead of timing out, and no
            # packet with a test address leaves the machine.
            _run(["ip", "-n", name, "route", "add", "default", "via", self.gateway])
        # user (password '*': no password login, yet not "locked" - sshd refuses
        # key logins of a locked ('!') account)
        self._state["users"].append(name)
        self._write_state()
        _run(
            ["useradd", "-M", "-U", "-d", str(home), "-s", "/bin/bash", "-c", _USER_COMMENT, name],
            what=f"useradd {name}",
        )
        _run(["usermod", "-p", "*", name])
        pw = pwd.getpwnam(name)
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        shutil.copyfile(self.client_key.with_suffix(".pub"), home / ".ssh" / "authorized_keys")
        for p in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        home.chmod(0o755)
        (home / ".ssh" / "authorized_keys").chmod(0o600)
        # host key
        _run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(root / "ssh_host_ed25519_key")],
            what=f"host key {name}",
        )
        pub = (root / "ssh_host_ed25519_key.pub").read_text().split()
        (root / "bin").mkdir()
        (root / "bin").chmod(0o755)
        docker_root = root / "docker"
        self.hosts.append(
            TestHost(
                index=i,
                name=name,
                address=address,
                user=name,
                home=home,
                docker_socket=docker_root / "docker.sock",
                key_path=self.client_key,
                known_hosts_entry=f"{address} {pub[0]} {pub[1]}",
                root=root,
            )
        )
        cgroup = f"{name}-{self.root.name[-8:]}"  # type: ignore[union-attr]
        self._state["cgroups"].append(cgroup)
        self._dockerd[i] = Dockerd(docker_root, cgroup=cgroup, netns=name, group=name)
        (root / "sshd_config").write_text(self._sshd_config(self.hosts[-1]))

    def _sshd_config(self, h: TestHost) -> str:
        return "\n".join(
            [
                f"ListenAddress {h.address}:{h.ssh_port}",
                f"HostKey {h.root / 'ssh_host_ed25519_key'}",
                f"PidFile {h.root / 'sshd.pid'}",
                f"AllowUsers {h.user}",
                "AuthorizedKeysFile .ssh/authorized_keys",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin no",
                # No PAM: pam_loginuid/pam_systemd fail outside a real login setup.
                "UsePAM no",
                # The user's processes reach this host's own engine, as on a real machine.
                # Its own programs first (``bin_dir``), then sshd's default PATH. One SetEnv
                # line: sshd takes the first SetEnv line only.
                f"SetEnv DOCKER_HOST={h.docker_host} PATH={h.bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/games",
                # Fabric's put/get use SFTP.
                f"Subsystem sftp {_SFTP_SERVER}",
                # No MaxSessions / MaxStartups tuning: the hosts run sshd with OpenSSH's defaults
                # (10 channels per connection, MaxStartups 10:30:100), as users' machines do.
                "PrintMotd no",
                "X11Forwarding no",
                "LogLevel VERBOSE",
                "",
            ]
        )

    def _write_client_files(self) -> None:
        d = self._need_root() / "client"
        (d / "known_hosts").write_text("".join(h.known_hosts_entry + "\n" for h in self.hosts))
        blocks = []
        for h in self.hosts:
            blocks.append(
                f"Host {h.name}\n  HostName {h.address}\n  Port {h.ssh_port}\n  User {h.user}\n"
                f"  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
            )
        (d / "ssh_config").write_text("\n".join(blocks))

    def _start_sshd(self, i: int) -> None:
        h = self.host(i)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        _run([_SSHD, "-t", "-f", str(h.root / "sshd_config")], what=f"sshd config of {h.name}")
        logf = open(h.root / "sshd.log", "ab")
        try:
            # nsenter execs unshare, which execs sh, which execs sshd: one pid throughout.
            # The new UTS namespace gives the host its own hostname; SSH sessions inherit it.
            proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{h.name}",
                    "--",
                    "unshare",
                    "--uts",
                    "--",
                    "sh",
                    "-c",
                    'hostname "$0" && exec "$1" -D -e -f "$2"',
                    h.name,
                    _SSHD,
                    str(h.root / "sshd_config"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            logf.close()
        self._sshd[i] = proc
        self._state["pids"].append(proc.pid)
        self._write_state()

    def _sshd_ready(self, h: TestHost) -> bool:
        proc = self._sshd[h.index]
        if proc.poll() is not None:
            raise TestHostError(f"sshd of {h.name} exited {proc.returncode}: {_tail(h.root / 'sshd.log')}")
        return _port_open(h.address, h.ssh_port)

    def _start_dockerd(self, i: int) -> None:
        d = self._dockerd[i]
        d.uts_pid = self._sshd[i].pid  # same hostname as the SSH sessions
        d.start()
        self._state["pids"].append(d.proc.pid)  # type: ignore[union-attr]
        self._write_state()

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Tear everything down; carries on past errors and logs them.  Idempotent."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        t0 = time.monotonic()
        # Daemons first, in parallel: each SIGTERM, then the bounded wait.
        for d in self._dockerd.values():
            if d.proc is not None and d.proc.poll() is None:
                d.proc.send_signal(signal.SIGTERM)
        for i, d in self._dockerd.items():
            self._best_effort(f"stop dockerd of host {i}", d.stop)
        for proc in self._sshd.values():
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self._best_effort("teardown", lambda: _teardown(self._state))
        self._dockerd.clear()
        self._sshd.clear()
        self.hosts.clear()
        self.root = None
        self.base_image = self.rabbitmq_image = None
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                (STATE_DIR / f"{self.prefix}.json").unlink()
            self._lock_fh.close()
            self._lock_fh = None
        log.info("test hosts torn down in %.1f s", time.monotonic() - t0)

    @staticmethod
    def _best_effort(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.exception("test hosts: %s failed", what)


def _teardown(state: dict[str, Any]) -> None:
    """Remove what ``state`` (a cluster's record) names.  Safe to run twice."""
    prefix = state.get("prefix", "")
    root = state.get("root")
    pids = [p for p in state.get("pids", []) if _alive(p)]
    if root:
        # Only pids that are still ours (a recycled pid would not mention our directory).
        pids = [p for p in pids if p in _pids_mentioning(root)] + _pids_mentioning(root + "/")
    _kill_pids(pids)
    for name in state.get("netns", []):
        _kill_pids(_netns_pids(name))
    for cgroup in state.get("cgroups", []):
        _remove_cgroup(cgroup)
    for name in state.get("users", []):
        _remove_user(name)
    for name in state.get("netns", []):
        _run(["ip", "netns", "del", name], check=False, timeout=20)
        _run(["ip", "link", "del", f"{name}-v"], check=False, timeout=20)
    if state.get("bridge"):
        _run(["ip", "link", "del", state["bridge"]], check=False, timeout=20)
    for rule in state.get("iptables", []):
        table = rule[:2] if rule[0] == "-t" else []
        _iptables(*table, "-D", *(rule[2:] if table else rule))
    if state.get("ip_forward_was") == "0":
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0")
    if root and Path(root).name.startswith(f"{prefix}-hosts-"):
        _remove_tree(Path(root))


def _remove_user(name: str) -> None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return
    if pw.pw_gecos != _USER_COMMENT:
        log.warning("not removing user %s: not one of ours (comment %r)", name, pw.pw_gecos)
        return
    out = _run(["ps", "-o", "pid=", "-u", str(pw.pw_uid)], check=False, timeout=20)
    _kill_pids([int(p) for p in out.stdout.split() if p.isdigit()])
    _run(["userdel", name], check=False, timeout=30)
    # useradd -U made a group of the same name; userdel removes it unless in use.
    _run(["groupdel", name], check=False, timeout=30)


def cleanup_stale(prefix: str = "mlft") -> None:
    """Remove what a crashed run with ``prefix`` left: processes, netns, links, users, files.

    Refuses (TestHostError) while a live cluster with that prefix holds its lock.
    """
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / f"{prefix}.lock", "a+") as fh:
        if not _try_flock(fh):
            raise TestHostError(f"a test-host cluster with prefix {prefix!r} is running; not cleaning it up")
        _cleanup_stale_locked(prefix)


def _cleanup_stale_locked(prefix: str) -> None:
    state_file = STATE_DIR / f"{prefix}.json"
    states = []
    with contextlib.suppress(OSError, ValueError):
        states.append(json.loads(state_file.read_text()))
    # What a run that died before recording it may still have left, found by name.
    pat = re.compile(rf"^{re.escape(prefix)}\d+$")
    netns = [
        line.split()[0]
        for line in _run(["ip", "netns", "list"], check=False, timeout=20).stdout.splitlines()
        if line.split() and pat.match(line.split()[0])
    ]
    users = [p.pw_name for p in pwd.getpwall() if pat.match(p.pw_name) and p.pw_gecos == _USER_COMMENT]
    roots = [str(p) for p in Path("/tmp").glob(f"{prefix}-hosts-*")]
    roots += [str(p) for p in Path("/var/tmp").glob(f"{prefix}-build-*")]
    cg_pat = re.compile(rf"^{re.escape(prefix)}(\d+|-build)-")
    cgroups = sorted(
        {
            d.name
            for top in Path("/sys/fs/cgroup").glob("*")
            if top.is_dir()
            for d in [top, *top.glob("*")]
            if d.is_dir() and cg_pat.match(d.name)
        }
    )
    bridge = f"{prefix}-br"
    has_bridge = _run(["ip", "link", "show", bridge], check=False, timeout=10).returncode == 0
    states.append(
        {
            "prefix": prefix,
            "netns": netns,
            "users": users,
            "cgroups": cgroups,
            "bridge": bridge if has_bridge else None,
            "pids": [],
        }
    )
    states += [{"prefix": prefix, "root": r} for r in roots]
    if netns or users or roots or cgroups or has_bridge or state_file.exists():
        log.warning("removing leftovers of an earlier test-host run (prefix %s)", prefix)
    for state in states:
        _teardown(state)
    with contextlib.suppress(OSError):
        state_file.unlink()
