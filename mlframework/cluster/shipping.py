"""``--image-source ship``: every image a host needs and lacks goes there from this machine's Docker, once.

A host needs the worker image (workers, and Flower on the master) and, on the
master, the broker image. Presence is checked by image *id*, not by name: a
host whose ``rabbitmq:3-management`` is another build than this machine's gets
this machine's. Each image is saved here once (``docker save``) and loaded on
the hosts that lack it in parallel (``docker load`` over each host's SSH
connection); a host that has it is skipped. An image this machine lacks is
left alone where every host has it (by name), else pulled here first, or named in the error.
Names are read as Docker reads them: ``mylab/rabbitmq`` is shipped as
``mylab/rabbitmq:latest`` (:mod:`~mlframework.cluster.image_names`); a Docker
error names the host and the image in one line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from docker.errors import DockerException, ImageNotFound

from mlframework.cluster import images
from mlframework.cluster.ssh.group import on_hosts
from mlframework.cluster.ssh.remote import HostSession
from mlframework.exceptions import ServiceError

_DAEMON_ADVICE = "check that host's Docker (docker info)"

log = logging.getLogger(__name__)


def _local_id(local: Any, name: str) -> str:
    with images.docker_errors(images.HERE, f"looking for image {name}", "check this machine's Docker (docker info)"):
        try:
            return str(local.images.get(name).id)
        except ImageNotFound:
            pass
    try:
        return str(local.images.pull(name).id)
    except DockerException as exc:
        raise ServiceError(
            f"--image-source ship: image {name} is not in this machine's Docker and cannot be pulled "
            f"({images.said_by_docker(exc)}); check its name and tag, or load it here with docker load"
        ) from None


def _has_local(local: Any, name: str) -> bool:
    with images.docker_errors(images.HERE, f"looking for image {name}", "check this machine's Docker (docker info)"):
        return images.has_image(local, name)


def _host_id(session: HostSession, name: str) -> str | None:
    with images.docker_errors(str(session.host), f"looking for image {name}", _DAEMON_ADVICE):
        try:
            return str(session.docker().images.get(name).id)
        except ImageNotFound:
            return None


def _load(session: HostSession, tarball: Path, name: str) -> None:
    images.load_from_file(session.docker(), tarball, name, str(session.host), force=True)


def ship_images(
    local: Any, needs: Sequence[tuple[HostSession, Sequence[str]]], report: Callable[[str], None]
) -> dict[str, list[str]]:
    """Put each host's images (``needs``: session -> image names) there; returns ``image -> hosts shipped to``."""
    wanted: dict[str, list[HostSession]] = {}
    for session, names in needs:
        if session.host.is_local:
            continue  # this machine's daemon is the one the images come from
        for name in names:
            wanted.setdefault(name, []).append(session)
    shipped: dict[str, list[str]] = {}
    for name, sessions in wanted.items():
        ids = on_hosts(f"looking for {name}", sessions, functools.partial(_host_id, name=name))
        if all(ids) and not _has_local(local, name):
            report(f"{name} already on every host that needs it (not on this machine to compare)")
            continue
        image_id = _local_id(local, name)
        lacking = [session for session, present in zip(sessions, ids) if present != image_id]
        if not lacking:
            report(f"{name} already on every host that needs it")
            continue
        report(f"shipping {name} to {len(lacking)} host(s): {', '.join(str(s.host) for s in lacking)}")
        tarball = images.save_to_file(local, name)
        try:
            on_hosts(f"shipping {name}", lacking, functools.partial(_load, tarball=tarball, name=name))
        finally:
            tarball.unlink(missing_ok=True)
        shipped[name] = [str(s.host) for s in lacking]
    return shipped
