"""What the cluster IS: hosts, roles, images, and the ``config.sh`` that remembers them.

Plain data, no I/O to hosts. ``scripts/infrainit.sh`` options become a
:class:`ClusterSpec` through :meth:`ClusterSpec.from_options` (or
:meth:`ClusterSpec.from_config` with ``-f``); every missing or contradictory
option is one :class:`~mlframework.exceptions.ConfigError` line naming the
option and its value.

Options (seed meaning kept)::

    -a [user@]host[:port],...   hosts, numbered from 1 in this order
    -m local|N                  broker + master + Flower on this machine or on host N
    -w local,N1,N2...           workers on these hosts
    -b host[:port]              an already running broker, when no -m is given
    -r PATH                     remote directory, relative to the remote home
    -d NAME|PATH                a project: a name under projects/, or a path
    -i KEY                      ssh private key
    -f                          read the options from config.sh (options given too win)

``config.sh`` is a tracked file of ``NAME="value"`` lines. It is *data*:
:func:`load_config` parses the small, safe subset of shell syntax that
:func:`save_config` writes (plus comments, ``export`` and single quotes) and
refuses anything that a shell would expand or run, so ``source config.sh`` and
:func:`load_config` always agree on the values — and it is never sourced
here. Secrets never go into it (see :mod:`mlframework.cluster.secrets`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlframework.exceptions import ConfigError

#: How ``-m`` / ``-w`` name this machine.
LOCAL = "local"
#: The options file, at the repository root.
CONFIG_FILE = "config.sh"
DEFAULT_SSH_PORT = 22
DEFAULT_BROKER_PORT = 5672
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_BROKER_IMAGE = "rabbitmq:3-management"
IMAGE_SOURCES = ("build", "ship")  # build on every host / build here and ship with docker save|load

_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PATH_PART = re.compile(r"[A-Za-z0-9_.+@][A-Za-z0-9_.+@-]*")
_CLUSTER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]*")


def _show(value: object) -> str:
    """A value as it goes into a one-line message: as typed, or repr() when that is ambiguous."""
    text = str(value)
    if text and text.isprintable() and not any(c.isspace() for c in text) and "'" not in text:
        return text
    return repr(text)


def _said(option: str, value: object) -> str:
    """How a message quotes a setting: ``-w local,3``, or ``WORKERS=local,3 in config.sh``.

    ``option`` is an option (``-w``) or a config key with its file (``WORKERS in config.sh``).
    """
    if option.startswith("-"):
        return f"{option} {_show(value)}"
    key, _, where = option.partition(" in ")
    return f"{key}={_show(value)}" + (f" in {where}" if where else "")


# --------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class Host:
    """One machine of the cluster, as ``-a`` names it (or this machine, :meth:`local`)."""

    address: str  # DNS name or IP address (IPv6 without brackets); LOCAL for this machine
    user: str | None = None  # ssh login; None leaves it to ssh (current user, ~/.ssh/config)
    port: int = DEFAULT_SSH_PORT  # ssh port
    number: int = 0  # position in -a, counted from 1; 0 for this machine

    @classmethod
    def local(cls) -> Host:
        """This machine: reached without ssh."""
        return cls(address=LOCAL)

    @property
    def is_local(self) -> bool:
        """True for this machine."""
        return self.address == LOCAL

    @property
    def target(self) -> str:
        """``user@host`` or ``host``, for ssh; pass :attr:`port` separately."""
        return f"{self.user}@{self.address}" if self.user else self.address

    @property
    def ref(self) -> str:
        """How ``-m``/``-w`` name this host: ``local`` or its number."""
        return LOCAL if self.is_local else str(self.number)

    def __str__(self) -> str:
        """The ``-a`` spelling: ``[user@]host[:port]`` (``local`` for this machine)."""
        if self.is_local:
            return LOCAL
        address = f"[{self.address}]" if ":" in self.address else self.address
        text = f"{self.user}@{address}" if self.user else address
        return text if self.port == DEFAULT_SSH_PORT else f"{text}:{self.port}"


def _parse_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port {_show(text)} is not a number from 1 to 65535")
    return int(text)


def _parse_address(text: str, what: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address -> (address, port)."""
    port_text = None
    if text.startswith("["):
        address, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{what}: write an IPv6 address as [address] or [address]:port")
        port_text = rest[1:] if rest else None
        if not _is_ipv6(address):
            raise ConfigError(f"{what}: {_show(address)} is not an IPv6 address")
    elif text.count(":") == 1:
        address, port_text = text.split(":")
    else:
        address = text
    if ":" in address:
        if not _is_ipv6(address):
            raise ConfigError(f"{what}: {_show(address)} is not a host name or IP address")
    elif not _HOSTNAME.fullmatch(address):
        raise ConfigError(f"{what}: {_show(address)} is not a host name or IP address")
    if address.lower() == LOCAL:
        raise ConfigError(
            f"{what}: '{LOCAL}' is not a host address; this machine is '-m {LOCAL}' / '-w {LOCAL}' "
            "(or give localhost or its address)"
        )
    port = default_port if port_text is None else _parse_port(port_text, what)
    return address, port


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_host(text: str, number: int, option: str = "-a") -> Host:
    """One ``[user@]host[:port]`` entry of ``-a``; ``number`` is its position from 1."""
    what = f"{_said(option, text)} (entry {number})"
    user, sep, rest = text.rpartition("@") if "@" in text else (None, "", text)
    if sep and (not user or not _USER.fullmatch(user)):
        raise ConfigError(f"{what}: {_show(user) if user else 'empty name'} is not a user name")
    address, port = _parse_address(rest, what, DEFAULT_SSH_PORT)
    return Host(address=address, user=user or None, port=port, number=number)


def parse_host_list(text: str, option: str = "-a") -> tuple[Host, ...]:
    """``-a user@hostA,hostB:2222`` -> hosts numbered from 1; no empty or duplicate entries."""
    if not text or not text.strip():
        raise ConfigError(f"{option}: no hosts given; list them as [user@]host[:port],...")
    hosts: list[Host] = []
    seen: dict[tuple[str, int], Host] = {}
    for number, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            raise ConfigError(f"{_said(option, text)}: entry {number} is empty")
        host = parse_host(entry, number, option)
        key = (host.address.lower(), host.port)
        if key in seen:
            raise ConfigError(
                f"{_said(option, text)}: entries {seen[key].number} and {number} are the same host "
                f"({host.address} port {host.port}); list each host once"
            )
        seen[key] = host
        hosts.append(host)
    return tuple(hosts)


def parse_host_refs(text: str, hosts: tuple[Host, ...], option: str) -> tuple[Host, ...]:
    """``-w local,1,2`` / ``-m 1``: ``local`` or host numbers from -a -> hosts, in the given order."""
    if not text or not text.strip():
        raise ConfigError(f"{option}: no hosts given; use '{LOCAL}' or host numbers from -a")
    refs: list[Host] = []
    for position, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            raise ConfigError(f"{_said(option, text)}: entry {position} is empty")
        if entry.lower() == LOCAL:
            host = Host.local()
        elif entry.isascii() and entry.isdigit():
            number = int(entry)
            if not 1 <= number <= len(hosts):
                span = f"1 to {len(hosts)}" if hosts else "none: -a lists no hosts"
                raise ConfigError(
                    f"{_said(option, text)}: there is no host {number}; hosts are numbered "
                    f"from 1 in the order of -a ({span})"
                )
            host = hosts[number - 1]
        else:
            raise ConfigError(f"{_said(option, text)}: {_show(entry)} is neither '{LOCAL}' nor a host number from -a")
        if host in refs:
            raise ConfigError(f"{_said(option, text)}: host {host.ref} is listed twice")
        refs.append(host)
    return tuple(refs)


# --------------------------------------------------------------------------- the cluster


#: field -> (infrainit option, config.sh key, what it means). One table for messages and the file header.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "hosts": ("-a", "HOSTS", "hosts, [user@]host[:port], numbered from 1"),
    "ssh_key": ("-i", "SSH_KEY", "ssh private key file (empty: ssh's default)"),
    "remote_path": ("-r", "REMOTE_PATH", "directory on the hosts, relative to the remote home"),
    "project": ("-d", "PROJECT", "project: a name under projects/ or a path"),
    "master": ("-m", "MASTER", "broker + master + Flower: local or a host number (empty: none)"),
    "workers": ("-w", "WORKERS", "workers: local and/or host numbers, comma-separated"),
    "broker": ("-b", "BROKER", "running broker host[:port] when MASTER is empty"),
    "base_image": ("--base-image", "BASE_IMAGE", "base image of the worker image"),
    "broker_image": ("--broker-image", "BROKER_IMAGE", "RabbitMQ image"),
    "image_source": ("--image-source", "IMAGE_SOURCE", "build: on every host; ship: here, then docker save|load"),
    "cpu_slots": ("--cpu-slots", "CPU_SLOTS", "worker processes on hosts without GPUs (empty: one per CPU)"),
    "accept_new_host_keys": (
        "--accept-new-host-keys",
        "ACCEPT_NEW_HOST_KEYS",
        "true: trust the key of a host not yet in known_hosts",
    ),
    "cluster_name": ("--cluster-name", "CLUSTER_NAME", "name in container names and labels"),
}
CONFIG_KEYS: dict[str, str] = {name: key for name, (_, key, _) in OPTIONS.items()}  # field -> KEY


def default_cluster_name(project: str) -> str:
    """``mnist`` for ``-d mnist`` or ``-d ~/work/MNIST/``; ``mlframework`` when nothing usable is left."""
    name = PurePosixPath(project.rstrip("/")).name if project else ""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "mlframework"


@dataclass(frozen=True)
class ClusterSpec:
    """Everything infrainit needs to know to build, start, update or clean a cluster."""

    hosts: tuple[Host, ...]  # -a, in order (Host.number = position from 1)
    remote_path: str  # -r, normalised, relative to the remote home (never absolute, no ..)
    project: str  # -d as given: a name under projects/ or a path (see project_dir)
    master: Host | None  # -m: where broker, master and Flower run; None with -b
    workers: tuple[Host, ...]  # -w: one worker set per host, in the order given
    ssh_key: str | None = None  # -i as given (~ not expanded); None: ssh's default keys/agent
    broker_address: str | None = None  # -b host[:port] of a running broker; None with -m
    base_image: str = DEFAULT_BASE_IMAGE  # base of the worker image
    broker_image: str = DEFAULT_BROKER_IMAGE  # RabbitMQ image (management plugin for health checks)
    image_source: str = "build"  # "build" on every host, or "ship" (build here, docker save|load)
    cpu_slots: int | None = None  # worker processes on CPU-only hosts; None: one per CPU there
    accept_new_host_keys: bool = False  # ssh StrictHostKeyChecking=accept-new instead of yes
    cluster_name: str = "mlframework"  # container names/labels, RabbitMQ user/vhost suffix

    # ------------------------------------------------------------------ derived

    @property
    def hosts_in_use(self) -> tuple[Host, ...]:
        """Master and worker hosts, each once: this machine first, then by number."""
        used = {h for h in (self.master, *self.workers) if h is not None}
        return tuple(sorted(used, key=lambda h: h.number))

    @property
    def ssh_key_path(self) -> Path | None:
        """:attr:`ssh_key` with ``~`` expanded."""
        return Path(self.ssh_key).expanduser() if self.ssh_key else None

    @property
    def broker_host_address(self) -> str | None:
        """The broker's address as workers use it: the master's address or ``-b``'s host.

        None when the master is this machine: only the caller can tell which of
        this machine's addresses the workers reach (see :meth:`broker_endpoint`).
        """
        if self.master is not None:
            return None if self.master.is_local else self.master.address
        assert self.broker_address is not None, "from_options guarantees -m or -b"
        return _parse_address(self.broker_address, "-b", DEFAULT_BROKER_PORT)[0]

    @property
    def broker_port(self) -> int:
        """AMQP port: 5672 with -m, or the port of -b."""
        if self.broker_address is None:
            return DEFAULT_BROKER_PORT
        return _parse_address(self.broker_address, "-b", DEFAULT_BROKER_PORT)[1]

    def broker_endpoint(self, local_address: str | None = None) -> tuple[str, int]:
        """(host, port) workers connect to.

        ``local_address`` is this machine's address as the workers see it, needed
        when the master is this machine and some worker is not; with a local
        master and only local workers it defaults to 127.0.0.1.
        """
        host = self.broker_host_address
        if host is None:
            if local_address is None:
                if any(not w.is_local for w in self.workers):
                    raise ConfigError(
                        "-m local with workers on other hosts: this machine's address as they reach it is needed"
                    )
                local_address = "127.0.0.1"
            host = local_address
        return host, self.broker_port

    def project_dir(self, repo_root: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None) -> Path:
        """The project directory: ``projects/<name>`` for a plain name, else a path.

        A relative path is taken from ``cwd`` (default: the current directory).
        ConfigError when it does not exist or holds no ``tasks.py``.
        """
        projects = Path(repo_root) / "projects"
        if _PLAIN_NAME.fullmatch(self.project):
            path = projects / self.project
        else:
            path = Path(self.project).expanduser()
            if not path.is_absolute():
                path = Path(cwd if cwd is not None else Path.cwd()) / path
        if not path.is_dir():
            known = sorted(p.parent.name for p in projects.glob("*/tasks.py"))
            hint = f" (projects: {', '.join(known)})" if known else ""
            raise ConfigError(f"{_said('-d', self.project)}: no project directory {path}{hint}")
        if not (path / "tasks.py").is_file():
            raise ConfigError(
                f"{_said('-d', self.project)}: {path} has no tasks.py; a project defines its tasks there "
                "(see projects/mnist)"
            )
        return path.resolve()

    # ------------------------------------------------------------------ building and saving

    @classmethod
    def from_options(
        cls,
        *,
        hosts: str | None = None,
        ssh_key: str | None = None,
        remote_path: str | None = None,
        project: str | None = None,
        master: str | None = None,
        workers: str | None = None,
        broker: str | None = None,
        base_image: str | None = None,
        broker_image: str | None = None,
        image_source: str | None = None,
        cpu_slots: str | int | None = None,
        accept_new_host_keys: str | bool | None = None,
        cluster_name: str | None = None,
    ) -> ClusterSpec:
        """A validated spec from infrainit's options (raw strings; None or "" = not given)."""
        raw = {k: v for k, v in locals().items() if k in OPTIONS}
        return _build(raw, lambda name: OPTIONS[name][0])

    @classmethod
    def from_config(
        cls,
        mapping: Mapping[str, str],
        source: str = CONFIG_FILE,
        overrides: Mapping[str, str | int | bool | None] | None = None,
    ) -> ClusterSpec:
        """A validated spec from ``config.sh`` (``-f``); ``overrides`` (options given too) win.

        ``overrides`` uses :meth:`from_options`' keyword names; None means not
        given. Messages name ``KEY in config.sh`` or the option, whichever
        supplied the value.
        """
        unknown = sorted(set(mapping) - set(CONFIG_KEYS.values()))
        if unknown:
            raise ConfigError(f"{source}: unknown setting {unknown[0]} (known: {', '.join(CONFIG_KEYS.values())})")
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        bad = sorted(set(overrides) - set(OPTIONS))
        if bad:
            raise TypeError(f"unknown option {bad[0]!r}")
        raw = {name: overrides.get(name, mapping.get(key)) for name, key in CONFIG_KEYS.items()}
        return _build(raw, lambda name: OPTIONS[name][0] if name in overrides else f"{CONFIG_KEYS[name]} in {source}")

    def to_config(self) -> dict[str, str]:
        """``config.sh`` values (all keys, "" for unset) that :meth:`from_config` turns back into this spec."""
        return {
            "HOSTS": ",".join(str(h) for h in self.hosts),
            "SSH_KEY": self.ssh_key or "",
            "REMOTE_PATH": self.remote_path,
            "PROJECT": self.project,
            "MASTER": self.master.ref if self.master else "",
            "WORKERS": ",".join(w.ref for w in self.workers),
            "BROKER": self.broker_address or "",
            "BASE_IMAGE": self.base_image,
            "BROKER_IMAGE": self.broker_image,
            "IMAGE_SOURCE": self.image_source,
            "CPU_SLOTS": "" if self.cpu_slots is None else str(self.cpu_slots),
            "ACCEPT_NEW_HOST_KEYS": "true" if self.accept_new_host_keys else "false",
            "CLUSTER_NAME": self.cluster_name,
        }


_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off", "")


def _build(raw: Mapping[str, object], label: Callable[[str], str]) -> ClusterSpec:
    """Validate raw option values; ``label(field)`` names the option or config key in messages."""

    def given(name: str) -> str | None:
        value = raw.get(name)
        if value is None or isinstance(value, (bool, int)):
            return None if value is None else str(value)
        text = str(value).strip()
        if any(c in text for c in "\n\r\0"):
            raise ConfigError(f"{_said(label(name), value)}: line breaks and NUL are not allowed")
        return text or None

    def required(name: str, hint: str) -> str:
        value = given(name)
        if value is None:
            raise ConfigError(f"{label(name)} is missing: {hint}")
        return value

    hosts = parse_host_list(required("hosts", "list the hosts as [user@]host[:port],..."), label("hosts"))
    remote_path = _remote_path(
        required("remote_path", "name a directory relative to the remote home"), label("remote_path")
    )
    project = required("project", "name a project under projects/ or give its path")

    master_text, workers_text, broker = given("master"), given("workers"), given("broker")
    master = None
    if master_text is not None:
        refs = parse_host_refs(master_text, hosts, label("master"))
        if len(refs) != 1:
            raise ConfigError(f"{_said(label('master'), master_text)}: name one host, '{LOCAL}' or a number")
        master = refs[0]
    workers = parse_host_refs(workers_text, hosts, label("workers")) if workers_text is not None else ()
    if master is not None and broker is not None:
        raise ConfigError(
            f"{_said(label('broker'), broker)} and {_said(label('master'), master_text)} exclude each other: "
            "-m starts a broker, -b names one already running"
        )
    if master is None and not workers:
        raise ConfigError(f"nothing to start: give {label('master')} and/or {label('workers')}")
    if workers and master is None and broker is None:
        raise ConfigError(
            f"{_said(label('workers'), workers_text)} needs a broker: start one with {label('master')} "
            f"or name a running one with {label('broker')} host[:port]"
        )
    if broker is not None:
        if "://" in broker or "@" in broker:
            raise ConfigError(
                f"{_said(label('broker'), broker)}: give host[:port] only; the credentials come from "
                ".mlframework/secrets.env"
            )
        _parse_address(broker, f"{_said(label('broker'), broker)}", DEFAULT_BROKER_PORT)

    image_source = (given("image_source") or "build").lower()
    if image_source not in IMAGE_SOURCES:
        raise ConfigError(f"{_said(label('image_source'), image_source)}: use one of {', '.join(IMAGE_SOURCES)}")
    cluster_name = given("cluster_name") or default_cluster_name(project)
    if not _CLUSTER_NAME.fullmatch(cluster_name):
        raise ConfigError(
            f"{_said(label('cluster_name'), cluster_name)}: use lowercase letters, digits, '.', '_', '-' "
            "(at most 63, starting with a letter or digit)"
        )
    ssh_key = given("ssh_key")
    if ssh_key is not None and ssh_key.startswith("-"):
        raise ConfigError(f"{_said(label('ssh_key'), ssh_key)}: not a key file name")
    return ClusterSpec(
        hosts=hosts,
        remote_path=remote_path,
        project=project,
        master=master,
        workers=workers,
        ssh_key=ssh_key,
        broker_address=broker,
        base_image=_image(given("base_image") or DEFAULT_BASE_IMAGE, label("base_image")),
        broker_image=_image(given("broker_image") or DEFAULT_BROKER_IMAGE, label("broker_image")),
        image_source=image_source,
        cpu_slots=_cpu_slots(raw.get("cpu_slots"), label("cpu_slots")),
        accept_new_host_keys=_flag(raw.get("accept_new_host_keys"), label("accept_new_host_keys")),
        cluster_name=cluster_name,
    )


def _remote_path(text: str, option: str) -> str:
    """Normalise -r: relative to the home, ``~/`` tolerated, no ``..``, plain characters only."""
    path = text[2:] if text.startswith("~/") else text
    if path.startswith("/") or path.startswith("~"):
        raise ConfigError(f"{_said(option, text)}: give a path relative to the remote home, not an absolute one")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ConfigError(f"{_said(option, text)}: name a directory under the remote home, not the home itself")
    for part in parts:
        if part == "..":
            raise ConfigError(f"{_said(option, text)}: '..' is not allowed; stay inside the remote home")
        if not _PATH_PART.fullmatch(part):
            raise ConfigError(
                f"{_said(option, text)}: use letters, digits and . _ + @ - in directory names (no spaces, no leading -)"
            )
    return "/".join(parts)


def _image(text: str, option: str) -> str:
    if not _IMAGE.fullmatch(text):
        raise ConfigError(f"{_said(option, text)}: not a Docker image reference")
    return text


def _cpu_slots(value: object, option: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{_said(option, value)}: give a number of worker processes, 1 or more")
    return int(text)


def _flag(value: object, option: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{_said(option, value)}: use true or false")


# --------------------------------------------------------------------------- config.sh as data

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Characters that mean themselves in an unquoted shell word (no expansion, globbing, splitting).
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./,:@%+=^-")
_DQ_ESCAPES = '"\\$`'  # what a backslash escapes inside double quotes (bash keeps it before others)
_WHY = {
    "$": "$ expands in the shell; quote the value and write \\$",
    "`": "backticks run a command; quote the value and write \\`",
    ";": "';' separates commands; quote the value",
    "&": "'&' runs commands; quote the value",
    "|": "'|' pipes commands; quote the value",
    "(": "parentheses are shell syntax; quote the value",
    ")": "parentheses are shell syntax; quote the value",
    "<": "redirections are not allowed; quote the value",
    ">": "redirections are not allowed; quote the value",
    "~": "an unquoted ~ expands to a home directory; quote the value",
    "#": "'#' inside an unquoted value; quote the value",
    "\\": "backslash outside quotes; quote the value",
}


class _LineError(Exception):
    pass


def _parse_line(line: str) -> tuple[str, str] | None:
    """``[export ]NAME=value [# comment]`` -> (NAME, value); None for blank and comment lines."""
    n, i = len(line), 0
    while i < n and line[i] in " \t":
        i += 1
    if i == n or line[i] == "#":
        return None
    if line.startswith("export", i) and i + 6 < n and line[i + 6] in " \t":
        i += 6
        while i < n and line[i] in " \t":
            i += 1
    match = _NAME.match(line, i)
    if not match:
        raise _LineError("expected NAME=value (only assignments and comments are allowed)")
    name, i = match.group(), match.end()
    if i == n or line[i] != "=":
        raise _LineError(f"expected '=' right after {name} (no spaces around =, no other commands)")
    i += 1
    value: list[str] = []
    while i < n and line[i] not in " \t":
        c = line[i]
        if c == '"':
            i += 1
            while True:
                if i == n:
                    raise _LineError("unterminated double quote (a value must stay on one line)")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    if i + 1 == n:
                        raise _LineError("backslash at the end of the line (a value must stay on one line)")
                    if line[i + 1] in _DQ_ESCAPES:
                        value.append(line[i + 1])
                        i += 2
                        continue
                    value.append(c)
                elif c in "$`":
                    raise _LineError(_WHY[c].replace("quote the value and ", ""))
                else:
                    value.append(c)
                i += 1
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise _LineError("unterminated single quote (a value must stay on one line)")
            value.append(line[i + 1 : end])
            i = end + 1
        elif c in _BARE:
            value.append(c)
            i += 1
        else:
            raise _LineError(_WHY.get(c, f"character {c!r} must be quoted"))
    while i < n and line[i] in " \t":
        i += 1
    if i < n and line[i] != "#":
        raise _LineError(f"text after the value of {name} (a shell would run it as a command); quote the value")
    return name, "".join(value)


def parse_config(text: str, source: str = CONFIG_FILE) -> dict[str, str]:
    """``NAME=value`` lines -> dict, refusing anything a shell would expand or run.

    Accepted: blank lines, ``# comments``, ``[export ]NAME=value [# comment]``
    where value is any run of ``"double"`` (only ``\\" \\\\ \\$ \\``` unescaped,
    as in bash), ``'single'`` and plain characters. ConfigError names
    ``source`` and the line otherwise, or when a name is set twice.
    """
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            if "\0" in line:
                raise _LineError("NUL byte")
            if line.endswith("\r"):
                raise _LineError("carriage return: the file has Windows line endings; convert it with dos2unix")
            parsed = _parse_line(line)
        except _LineError as exc:
            raise ConfigError(f"{source}:{number}: {exc}") from None
        if parsed is None:
            continue
        name, value = parsed
        if name in values:
            raise ConfigError(f"{source}:{number}: {name} is already set on line {lines[name]}")
        values[name], lines[name] = value, number
    return values


def load_config(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``config.sh`` (see :func:`parse_config`); it is never executed."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run infrainit once without -f to write it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, str(path))


def quote_value(value: str) -> str:
    """``"value"`` that bash and :func:`parse_config` both read back as ``value``.

    Line breaks and NUL have no safe one-line spelling and are refused.
    """
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(f"{_show(value)}: line breaks and NUL cannot be stored in a config file")
    escaped = "".join("\\" + c if c in _DQ_ESCAPES else c for c in value)
    return f'"{escaped}"'


def format_config(mapping: Mapping[str, str], header: Iterable[str] = ()) -> str:
    """``# header`` lines then one ``NAME="value"`` line per item, in order."""
    lines = [f"# {h}".rstrip() for h in header]
    for name, value in mapping.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{_show(name)} is not a valid setting name")
        lines.append(f"{name}={quote_value(value)}")
    return "\n".join(lines) + "\n"


def config_header(keys: Iterable[str]) -> list[str]:
    """The comment that opens a generated config.sh: what it is and what each key means."""
    meaning = {key: (OPTIONS[name][0], OPTIONS[name][2]) for name, key in CONFIG_KEYS.items()}
    lines = [
        "infrainit options, written by scripts/infrainit.sh; reuse them with `infrainit.sh -f`.",
        'Data, not a script: mlframework parses these NAME="value" lines and never runs them.',
        "No secrets here (this file is tracked); they live in .mlframework/secrets.env.",
        "",
    ]
    for key in keys:
        if key in meaning:
            option, text = meaning[key]
            lines.append(f"  {key:<21} {option:<23} {text}")
    return lines


def write_text_atomic(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` by ``text`` in one rename; the file never exists half-written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), mode)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_config(path: str | os.PathLike[str], mapping: Mapping[str, str]) -> None:
    """Write ``config.sh``: a header comment, then ``NAME="value"`` lines (atomically)."""
    target = Path(path)
    text = format_config(mapping, config_header(mapping))
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    write_text_atomic(target, text, mode)
