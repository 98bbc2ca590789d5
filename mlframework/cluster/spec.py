"""What the cluster IS: hosts, roles, images and options, as validated plain data.

No I/O at all. ``scripts/infrainit.sh`` options become a :class:`ClusterSpec`
through :meth:`ClusterSpec.from_options` (or :meth:`ClusterSpec.from_config`
with ``-f``, from ``config.sh`` values); every missing or contradictory
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

Hosts and their parsing are :mod:`mlframework.cluster.hosts`; ``config.sh`` on
disk and the project directory on this machine are
:mod:`mlframework.cluster.config_file`, in the ``NAME="value"`` format of
:mod:`mlframework.cluster.envfile`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlframework.cluster.hosts import (
    LOCAL,
    Host,
    parse_address,
    parse_host_list,
    parse_host_refs,
    said,
)
from mlframework.cluster.image_names import FORMS, parse_image
from mlframework.exceptions import ConfigError

__all__ = [
    "CONFIG_FILE",
    "CONFIG_KEYS",
    "OPTIONS",
    "ClusterSpec",
    "default_cluster_name",
]

#: The options file, at the repository root.
CONFIG_FILE = "config.sh"
DEFAULT_BROKER_PORT = 5672
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_BROKER_IMAGE = "rabbitmq:3-management"
IMAGE_SOURCES = ("build", "ship")  # build on every host / build here and ship with docker save|load

_PATH_PART = re.compile(r"[A-Za-z0-9_.+@][A-Za-z0-9_.+@-]*")
_CLUSTER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


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
    "trials_per_gpu": ("--trials-per-gpu", "TRIALS_PER_GPU", "trials run at once on one GPU (empty: 1)"),
    "flower_port": ("--flower-port", "FLOWER_PORT", "Flower's port on the master (empty: 5555 or the next free one)"),
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
    trials_per_gpu: int = 1  # trials packed on one GPU, each with 1/N of its memory; 1: a GPU per trial
    flower_port: int | None = None  # Flower's port on the master; None: 5555, or the next free one infrainit picks
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
        return parse_address(self.broker_address, "-b", DEFAULT_BROKER_PORT)[0]

    @property
    def broker_port(self) -> int:
        """AMQP port: 5672 with -m, or the port of -b."""
        if self.broker_address is None:
            return DEFAULT_BROKER_PORT
        return parse_address(self.broker_address, "-b", DEFAULT_BROKER_PORT)[1]

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
        trials_per_gpu: str | int | None = None,
        flower_port: str | int | None = None,
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
        if bad:  # a caller's bug (the CLI passes only OPTIONS' names), as an unknown keyword would be
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
            "TRIALS_PER_GPU": str(self.trials_per_gpu),
            "FLOWER_PORT": "" if self.flower_port is None else str(self.flower_port),
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
            raise ConfigError(f"{said(label(name), value)}: line breaks and NUL are not allowed")
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
            raise ConfigError(f"{said(label('master'), master_text)}: name one host, '{LOCAL}' or a number")
        master = refs[0]
    workers = parse_host_refs(workers_text, hosts, label("workers")) if workers_text is not None else ()
    if master is not None and broker is not None:
        raise ConfigError(
            f"{said(label('broker'), broker)} and {said(label('master'), master_text)} exclude each other: "
            "-m starts a broker, -b names one already running"
        )
    if master is None and not workers:
        raise ConfigError(f"nothing to start: give {label('master')} and/or {label('workers')}")
    if workers and master is None and broker is None:
        raise ConfigError(
            f"{said(label('workers'), workers_text)} needs a broker: start one with {label('master')} "
            f"or name a running one with {label('broker')} host[:port]"
        )
    if broker is not None:
        if "://" in broker or "@" in broker:
            raise ConfigError(
                f"{said(label('broker'), broker)}: give host[:port] only; the credentials come from "
                ".mlframework/secrets.env"
            )
        parse_address(broker, f"{said(label('broker'), broker)}", DEFAULT_BROKER_PORT)

    image_source = (given("image_source") or "build").lower()
    if image_source not in IMAGE_SOURCES:
        raise ConfigError(f"{said(label('image_source'), image_source)}: use one of {', '.join(IMAGE_SOURCES)}")
    cluster_name = given("cluster_name") or default_cluster_name(project)
    if not _CLUSTER_NAME.fullmatch(cluster_name):
        raise ConfigError(
            f"{said(label('cluster_name'), cluster_name)}: use lowercase letters, digits, '.', '_', '-' "
            "(at most 63, starting with a letter or digit)"
        )
    ssh_key = given("ssh_key")
    if ssh_key is not None and ssh_key.startswith("-"):
        raise ConfigError(f"{said(label('ssh_key'), ssh_key)}: not a key file name")
    broker_image = _image(given("broker_image") or DEFAULT_BROKER_IMAGE, label("broker_image"))
    if image_source == "ship" and parse_image(broker_image).pinned:
        # docker save|load carries tags but no digests: the master could not find the image by this name.
        raise ConfigError(
            f"{said(label('broker_image'), broker_image)} with {said(label('image_source'), image_source)}: "
            "docker load keeps no digest, so the master could not find the image by it; name it by tag "
            "(name:tag), or use --image-source build so that the master pulls it by digest"
        )
    return ClusterSpec(
        hosts=hosts,
        remote_path=remote_path,
        project=project,
        master=master,
        workers=workers,
        ssh_key=ssh_key,
        broker_address=broker,
        base_image=_image(given("base_image") or DEFAULT_BASE_IMAGE, label("base_image")),
        broker_image=broker_image,
        image_source=image_source,
        cpu_slots=_cpu_slots(raw.get("cpu_slots"), label("cpu_slots")),
        trials_per_gpu=_count(raw.get("trials_per_gpu"), label("trials_per_gpu"), "trials per GPU") or 1,
        flower_port=_port(raw.get("flower_port"), label("flower_port")),
        accept_new_host_keys=_flag(raw.get("accept_new_host_keys"), label("accept_new_host_keys")),
        cluster_name=cluster_name,
    )


def _remote_path(text: str, option: str) -> str:
    """Normalise -r: relative to the home, ``~/`` tolerated, no ``..``, plain characters only."""
    path = text[2:] if text.startswith("~/") else text
    if path.startswith("/") or path.startswith("~"):
        raise ConfigError(f"{said(option, text)}: give a path relative to the remote home, not an absolute one")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ConfigError(f"{said(option, text)}: name a directory under the remote home, not the home itself")
    for part in parts:
        if part == "..":
            raise ConfigError(f"{said(option, text)}: '..' is not allowed; stay inside the remote home")
        if not _PATH_PART.fullmatch(part):
            raise ConfigError(
                f"{said(option, text)}: use letters, digits and . _ + @ - in directory names (no spaces, no leading -)"
            )
    return "/".join(parts)


def _image(text: str, option: str) -> str:
    """An image name as given, once Docker would read it (see :mod:`~mlframework.cluster.image_names`)."""
    try:
        parse_image(text)
    except ValueError as exc:
        raise ConfigError(f"{said(option, text)}: {exc}; write {FORMS}") from None
    return text


def _cpu_slots(value: object, option: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{said(option, value)}: give a number of worker processes, 1 or more")
    return int(text)


def _count(value: object, option: str, what: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 64:
        raise ConfigError(f"{said(option, value)}: give a number of {what}, 1 to 64")
    return int(text)


def _port(value: object, option: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise ConfigError(f"{said(option, value)}: give a TCP port, 1024 to 65535")
    return int(text)


def _flag(value: object, option: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{said(option, value)}: use true or false")
