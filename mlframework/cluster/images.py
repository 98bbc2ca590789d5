"""Getting images onto the hosts: build the worker image there, or build here and ship.

The worker image (``infra/worker/Dockerfile``) holds Python, the framework's
dependencies and the project's ``requirements.txt``; the project and
framework code are mounted at run time (see :mod:`mlframework.cluster.services`).
Its build context is assembled here and streamed to the daemon through the
docker API, so a host needs nothing but Docker to build it:

* ``build`` -- every host builds it from the same context, in parallel;
* ``ship``  -- the Docker daemon of this machine builds it once, then
  ``docker save`` here and ``docker load`` on each host, for hosts that cannot
  reach a package index or registry.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from mlframework.exceptions import HostError, ServiceError

log = logging.getLogger(__name__)

DOCKERFILE = "infra/worker/Dockerfile"
_FRAMEWORK_FILES = ("setup.cfg", "pyproject.toml", "README.md")
_SKIP = ("__pycache__", ".pyc", ".git", ".venv", "results")


def _add_tree(archive: tarfile.TarFile, source: Path, name: str) -> None:
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if any(part in _SKIP or part.endswith(".pyc") for part in Path(info.name).parts):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0  # a context that only differs in timestamps must hash (and cache) alike
        return info

    archive.add(source, arcname=name, filter=keep)


def worker_context(repo_root: Path, project_dir: Path, ca_bundle: str | None = None) -> bytes:
    """The worker image's build context as a tar archive (layout: see infra/worker/Dockerfile).

    ``ca_bundle`` (default: ``$PIP_CERT`` when set) is added as ``certs/ca-certificates.crt``
    so pip inside the build trusts the same TLS interception as pip here.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add_tree(archive, repo_root / "infra" / "worker" / "Dockerfile", "Dockerfile")
        _add_tree(archive, repo_root / "mlframework", "mlframework")
        for name in _FRAMEWORK_FILES:
            if (repo_root / name).exists():
                _add_tree(archive, repo_root / name, name)
        _add_tree(archive, project_dir, "project")
        _add_tree(archive, repo_root / "scripts" / "constraints.txt", "constraints.txt")
        certs = tarfile.TarInfo("certs")
        certs.type = tarfile.DIRTYPE
        certs.mode = 0o755
        archive.addfile(certs)
        bundle = ca_bundle if ca_bundle is not None else os.environ.get("PIP_CERT")
        if bundle and Path(bundle).is_file():
            _add_tree(archive, Path(bundle), "certs/ca-certificates.crt")
    return buffer.getvalue()


def image_tag(cluster: str, repo_root: Path, project_dir: Path, base_image: str) -> str:
    """``mlframework-worker-<cluster>:<hash>`` of what the image's dependencies come from.

    Code changes do not change the tag: the code is mounted at run time, so
    ``update_files`` needs no rebuild; a changed requirements.txt, Dockerfile,
    framework dependency list or base image does.
    """
    digest = hashlib.sha256(base_image.encode())
    for path in (
        repo_root / DOCKERFILE,
        repo_root / "setup.cfg",
        repo_root / "pyproject.toml",
        repo_root / "scripts" / "constraints.txt",
        project_dir / "requirements.txt",
    ):
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"-") + b"\0")
    return f"mlframework-worker-{cluster}:{digest.hexdigest()[:12]}"


def has_image(client: docker.DockerClient, name: str) -> bool:
    """Whether the daemon has ``name`` already."""
    try:
        client.images.get(name)
        return True
    except ImageNotFound:
        return False


def build(client: docker.DockerClient, context: bytes, tag: str, base_image: str, host: str) -> None:
    """Build the worker image on the daemon of ``host`` (skipped when the tag exists)."""
    if has_image(client, tag):
        log.info("%s: %s already present", host, tag)
        return
    log.info("%s: building %s from %s", host, tag, base_image)
    try:
        client.images.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="host",
        )
    except BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
        tail = " | ".join(line for line in lines if line.strip())[-600:]
        raise HostError(host, f"building the worker image failed: {exc.msg}; {tail}") from None
    except APIError as exc:
        raise HostError(host, f"building the worker image failed: {exc.explanation or exc}") from None


def ensure_image(client: docker.DockerClient, name: str, host: str) -> None:
    """Make sure ``name`` is on the host: present, or pulled; HostError naming the image otherwise."""
    if has_image(client, name):
        return
    try:
        client.images.pull(name)
    except APIError as exc:
        raise HostError(
            host, f"image {name} is not on the host and cannot be pulled ({exc.explanation or exc})"
        ) from None


def save_to_file(client: docker.DockerClient, tag: str) -> Path:
    """``docker save`` an image into a temporary file (the caller removes it)."""
    handle, name = tempfile.mkstemp(prefix="mlframework-image-", suffix=".tar")
    with os.fdopen(handle, "wb") as out:
        # named=tag keeps the repository:tag in the archive; without it docker load gives an untagged image.
        for chunk in client.images.get(tag).save(chunk_size=1 << 20, named=tag):
            out.write(chunk)
    return Path(name)


def load_from_file(client: docker.DockerClient, tarball: Path, tag: str, host: str, force: bool = False) -> None:
    """``docker load`` a saved image on a host (skipped when the tag exists, unless ``force``)."""
    if not force and has_image(client, tag):
        return
    with open(tarball, "rb") as data:
        try:
            client.images.load(data)
        except APIError as exc:
            raise HostError(host, f"loading the shipped image failed: {exc.explanation or exc}") from None
    if not has_image(client, tag):
        raise HostError(host, f"the shipped image was loaded but {tag} is not on the host")


def local_daemon() -> Any:
    """The Docker daemon of this machine (``DOCKER_HOST`` or the default socket) for ``ship``."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        raise ServiceError(
            f"--image-source ship builds the image on this machine, but its Docker daemon is not usable: {exc}"
        ) from None
    return client
