"""Hosts as ``-a``, ``-m`` and ``-w`` name them: the :class:`Host` record and its parsers.

Plain data and pure parsing (no I/O): ``-a user@hostA,hostB:2222`` becomes
numbered :class:`Host` values, ``-m 1`` / ``-w local,2`` pick among them. Every
malformed entry is one :class:`~mlframework.exceptions.ConfigError` line that
quotes the option as the user gave it (:func:`said`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mlframework.exceptions import ConfigError

#: How ``-m`` / ``-w`` name this machine.
LOCAL = "local"
DEFAULT_SSH_PORT = 22

_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def show(value: object) -> str:
    """A value as it goes into a one-line message: as typed, or repr() when that is ambiguous."""
    text = str(value)
    if text and text.isprintable() and not any(c.isspace() for c in text) and "'" not in text:
        return text
    return repr(text)


def said(option: str, value: object) -> str:
    """How a message quotes a setting: ``-w local,3``, or ``WORKERS=local,3 in config.sh``.

    ``option`` is an option (``-w``) or a config key with its file (``WORKERS in config.sh``).
    """
    if option.startswith("-"):
        return f"{option} {show(value)}"
    key, _, where = option.partition(" in ")
    return f"{key}={show(value)}" + (f" in {where}" if where else "")


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
        raise ConfigError(f"{what}: port {show(text)} is not a number from 1 to 65535")
    return int(text)


def parse_address(text: str, what: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address -> (address, port)."""
    port_text = None
    if text.startswith("["):
        address, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{what}: write an IPv6 address as [address] or [address]:port")
        port_text = rest[1:] if rest else None
        if not _is_ipv6(address):
            raise ConfigError(f"{what}: {show(address)} is not an IPv6 address")
    elif text.count(":") == 1:
        address, port_text = text.split(":")
    else:
        address = text
    if ":" in address:
        if not _is_ipv6(address):
            raise ConfigError(f"{what}: {show(address)} is not a host name or IP address")
    elif not _HOSTNAME.fullmatch(address):
        raise ConfigError(f"{what}: {show(address)} is not a host name or IP address")
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
    what = f"{said(option, text)} (entry {number})"
    user, sep, rest = text.rpartition("@") if "@" in text else (None, "", text)
    if sep and (not user or not _USER.fullmatch(user)):
        raise ConfigError(f"{what}: {show(user) if user else 'empty name'} is not a user name")
    address, port = parse_address(rest, what, DEFAULT_SSH_PORT)
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
            raise ConfigError(f"{said(option, text)}: entry {number} is empty")
        host = parse_host(entry, number, option)
        key = (host.address.lower(), host.port)
        if key in seen:
            raise ConfigError(
                f"{said(option, text)}: entries {seen[key].number} and {number} are the same host "
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
            raise ConfigError(f"{said(option, text)}: entry {position} is empty")
        if entry.lower() == LOCAL:
            host = Host.local()
        elif entry.isascii() and entry.isdigit():
            number = int(entry)
            if not 1 <= number <= len(hosts):
                span = f"1 to {len(hosts)}" if hosts else "none: -a lists no hosts"
                raise ConfigError(
                    f"{said(option, text)}: there is no host {number}; hosts are numbered "
                    f"from 1 in the order of -a ({span})"
                )
            host = hosts[number - 1]
        else:
            raise ConfigError(f"{said(option, text)}: {show(entry)} is neither '{LOCAL}' nor a host number from -a")
        if host in refs:
            raise ConfigError(f"{said(option, text)}: host {host.ref} is listed twice")
        refs.append(host)
    return tuple(refs)
