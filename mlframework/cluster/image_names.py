"""Image names as people write them, read the way Docker reads them.

Every image option (``--base-image``, ``--broker-image``, ``BASE_IMAGE`` and
``BROKER_IMAGE`` in ``config.sh``) takes what ``docker pull`` takes::

    rabbitmq                        -> rabbitmq:latest (no tag means :latest)
    rabbitmq:3-management
    mylab/rabbitmq                  -> mylab/rabbitmq:latest
    registry.lab:5000/mylab/rabbitmq:3
    localhost:5000/rabbitmq
    rabbitmq@sha256:<64 hex>        (pinned by digest; ``name:tag@sha256:...`` goes by the digest too)

:func:`parse_image` splits a name with the docker SDK's own parsing
(:func:`docker.utils.parse_repository_tag`, :func:`docker.auth.split_repo_name`)
and checks each part against Docker's reference grammar, so a name Docker would
refuse is one line here, before any host is touched. :attr:`ImageName.reference`
is the name as the daemon lists it (``RepoTags``/``RepoDigests``): what
``docker save --named`` and every lookup need, where ``mylab/rabbitmq`` alone is
"not a valid tag". Pure: no daemon, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ImageName", "parse_image"]

# Docker's reference grammar (github.com/distribution/reference, regexp.go), part by part.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_NAME = 255  # characters of the repository name, domain included

# Docker Hub: the daemon lists docker.io/library/x as x, and docker.io/lab/x as lab/x.
_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_OFFICIAL = "library/"

FORMS = "name, name:tag, registry[:port]/name:tag or name@sha256:<digest>"


@dataclass(frozen=True)
class ImageName:
    """One image name, split as Docker splits it."""

    given: str  # as the user wrote it (what config.sh keeps)
    repository: str  # as the daemon lists it: docker.io/ and library/ dropped, registry[:port]/ kept
    tag: str  # the tag; "latest" when none was given (with a digest: the tag written, or "")
    digest: str | None = None  # "sha256:<hex>" when pinned by digest; Docker then ignores the tag

    @property
    def reference(self) -> str:
        """``repository@digest`` when pinned, else ``repository:tag``: how the daemon lists the image."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> bool:
        """Named by digest: any daemon that has the image by that name has exactly this content."""
        return self.digest is not None

    def __str__(self) -> str:
        """As given."""
        return self.given


def parse_image(text: str) -> ImageName:
    """Split an image name as Docker does; ValueError saying which part is wrong (see the module docstring).

    The docker SDK is imported here, not at module level: :mod:`~mlframework.cluster.spec`
    validates names with this and stays quick to import for commands that never talk to Docker.
    """
    from docker.auth import split_repo_name
    from docker.utils import parse_repository_tag

    if not text or text != text.strip() or "://" in text:
        raise ValueError("not an image name (no spaces, no scheme such as https://)")
    name, suffix = parse_repository_tag(text)
    digest: str | None = None
    tag = suffix
    if "@" in text:
        digest, (name, tag) = suffix, parse_repository_tag(name)  # name[:tag]@digest: Docker goes by the digest
        if not digest or not _DIGEST.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a digest (sha256:<64 hex digits>)")
        if digest.startswith("sha256:") and not _SHA256.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 digest (64 lowercase hex digits)")
    if tag is not None and not _TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r}: use letters, digits, _ . - (at most 128, not starting with . or -)")
    if len(name) > _MAX_NAME:
        raise ValueError(f"the repository name is longer than {_MAX_NAME} characters")
    domain, path = split_repo_name(name)
    explicit = name != path  # a registry was written
    if explicit and not _DOMAIN.fullmatch(domain):
        raise ValueError(f"registry {domain!r} is not a host name with an optional :port")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise ValueError(
                f"{component!r} in the repository name: use lowercase letters and digits, separated by . _ __ or -"
            )
    return ImageName(
        given=text,
        repository=_familiar(domain, path, explicit=explicit),
        tag=tag if tag is not None else ("" if digest else "latest"),
        digest=digest,
    )


def _familiar(domain: str, path: str, *, explicit: bool) -> str:
    """The repository as the daemon lists it (Docker's "familiar" name): Docker Hub's prefixes dropped."""
    if explicit and domain.lower() not in _HUB:
        return f"{domain}/{path}"
    if path.startswith(_OFFICIAL) and "/" not in path[len(_OFFICIAL) :]:
        return path[len(_OFFICIAL) :]
    return path
