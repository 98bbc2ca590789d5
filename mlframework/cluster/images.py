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

Image names are read as Docker reads them (:mod:`~mlframework.cluster.image_names`).
A Docker error on the way (build, pull, save, load, run) is one
:class:`~mlframework.exceptions.HostError` line naming the host, the image and
what to do (:func:`docker_errors`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from mlframework.cluster.image_names import parse_image
from mlframework.exceptions import HostError, ServiceError

log = logging.getLogger(__name__)

DOCKERFILE = "infra/worker/Dockerfile"
#: How messages name the machine infrainit runs on (the Docker daemon ``ship`` builds and saves with).
HERE = "this machine"

# What to do, per Docker step that failed (the last part of the one-line error).
PULL_ADVICE = (
    "check the name and tag, that the host reaches the registry (docker login there for a private one), "
    "or put the image there with --image-source ship"
)
LOAD_ADVICE = (
    "run infrainit again (the image is shipped anew); if it fails again, check the free disk space of the host's "
    "Docker (docker system df)"
)


def run_advice(image: str) -> str:
    """What to do when a container of ``image`` does not start."""
    return f"check that the image runs there (docker run --rm {image}) and the container's log (docker logs)"


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


def said_by_docker(exc: DockerException) -> str:
    """The daemon's own words for an error, on one line (not the SDK's URL and status prefix)."""
    text = exc.explanation if isinstance(exc, APIError) and exc.explanation else str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(str(text).split()) or type(exc).__name__


@contextlib.contextmanager
def docker_errors(host: str, doing: str, advice: str) -> Iterator[None]:
    """A Docker error while ``doing`` (a phrase naming the image) on ``host`` becomes one HostError line.

    The line reads ``host: doing failed: what Docker said; advice``. Errors that
    are not Docker's (a bug of ours, a lost SSH connection) pass unchanged.
    """
    try:
        yield
    except DockerException as exc:
        log.debug("%s: %s failed", host, doing, exc_info=True)
        raise HostError(host, f"{doing} failed: {said_by_docker(exc)}; {advice}") from None


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
        raise HostError(host, f"building the worker image {tag} from {base_image} failed: {exc.msg}; {tail}") from None
    except DockerException as exc:
        raise HostError(
            host,
            f"building the worker image {tag} from {base_image} failed: {said_by_docker(exc)}; "
            "check --base-image and the host's Docker (docker info)",
        ) from None


def ensure_image(client: docker.DockerClient, name: str, host: str) -> None:
    """Make sure ``name`` is on the host: present, or pulled; HostError naming the image otherwise."""
    with docker_errors(host, f"looking for image {name}", "check the host's Docker (docker info)"):
        if has_image(client, name):
            return
    with docker_errors(host, f"image {name} is not on the host, and pulling it", PULL_ADVICE):
        client.images.pull(name)


def save_to_file(client: docker.DockerClient, name: str) -> Path:
    """``docker save`` an image of this machine into a temporary file (the caller removes it).

    The archive names the image as the daemon lists it (``mylab/rabbitmq:latest`` for
    ``mylab/rabbitmq``), so that ``docker load`` gives it that name on the host.
    """
    reference = parse_image(name).reference
    handle, path = tempfile.mkstemp(prefix="mlframework-image-", suffix=".tar")
    try:
        advice = f"check docker image inspect {reference} here and the free space of {tempfile.gettempdir()}"
        with os.fdopen(handle, "wb") as out, docker_errors(HERE, f"saving image {name} for shipping", advice):
            # named= keeps repository:tag in the archive; without it docker load gives an untagged image.
            for chunk in client.images.get(reference).save(chunk_size=1 << 20, named=reference):
                out.write(chunk)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return Path(path)


def load_from_file(client: docker.DockerClient, tarball: Path, name: str, host: str, force: bool = False) -> None:
    """``docker load`` a saved image on a host (skipped when it has ``name``, unless ``force``)."""
    with docker_errors(host, f"loading the shipped image {name}", LOAD_ADVICE):
        if not force and has_image(client, name):
            return
        with open(tarball, "rb") as data:
            client.images.load(data)
        if not has_image(client, name):
            raise HostError(host, f"the shipped image was loaded but {name} is not on the host; {LOAD_ADVICE}")


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
