"""Fixtures for tests/cluster: real test hosts (netns + sshd + dockerd) on this machine.

See testbed/testhosts.py.  Nothing here is skipped: without root and apt the
cluster tests fail and say why (shared/STYLE.md: cluster tests run every time).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator

import pytest

from testbed.testhosts import (
    BASE_IMAGE,
    RABBITMQ_IMAGE,
    TestHostCluster,
    TestHostError,
    build_daemon,
    cleanup_stale,
    ensure_base_image,
    ensure_packages,
)

log = logging.getLogger(__name__)

PREFIX = "mlft"
SUBNET = "10.231.7.0/24"


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[TestHostCluster]:
    """Three started test hosts; ``BASE_IMAGE`` and ``RABBITMQ_IMAGE`` loaded into each one's dockerd.

    ``test_hosts.base_image`` / ``.rabbitmq_image`` name them; ``.client_key``,
    ``.known_hosts``, ``.ssh_config`` are the client-side files.
    """
    if os.geteuid() != 0:
        pytest.fail("tests/cluster need root (network namespaces, users, dockerd); run them as root", pytrace=False)
    if not shutil.which("apt-get"):
        pytest.fail(
            "tests/cluster need a Debian system with apt-get (docker.io, openssh-server, debootstrap, iproute2)",
            pytrace=False,
        )
    t0 = time.monotonic()
    try:
        ensure_packages()
        cleanup_stale(PREFIX)
    except TestHostError as exc:
        pytest.fail(f"cannot prepare test hosts: {exc}", pytrace=False)
    cluster = TestHostCluster(3, subnet=SUBNET, prefix=PREFIX)
    try:
        cluster.start()
        t1 = time.monotonic()
        cluster.load_images(rabbitmq=True)
        log.info("images on every host in %.1f s", time.monotonic() - t1)
    except TestHostError as exc:
        cluster.stop()
        pytest.fail(f"cannot start test hosts: {exc}", pytrace=False)
    except BaseException:
        cluster.stop()
        raise
    log.info("test hosts ready in %.1f s", time.monotonic() - t0)
    try:
        yield cluster
    finally:
        t1 = time.monotonic()
        cluster.stop()
        log.info("test hosts torn down in %.1f s", time.monotonic() - t1)


@pytest.fixture(scope="session")
def rabbitmq_image(test_hosts: TestHostCluster) -> str:
    """``RABBITMQ_IMAGE`` (Debian's rabbitmq-server, testbed/images/rabbitmq-debian), on every host."""
    assert test_hosts.rabbitmq_image == RABBITMQ_IMAGE
    return RABBITMQ_IMAGE


@pytest.fixture(scope="session")
def build_daemon_host(test_hosts: TestHostCluster) -> Iterator[str]:
    """DOCKER_HOST (``unix://...``) of a private dockerd in the root namespace, base image loaded.

    For building images that the framework then ships to the hosts; builds there
    need ``network_mode="host"`` (``docker build --network host``) to reach apt/pip
    mirrors: the daemon has no bridge.  Depends on ``test_hosts`` so that the
    cluster's stale-run cleanup (which removes ``/var/tmp/<prefix>-build-*``) runs first.
    """
    try:
        with build_daemon(PREFIX) as daemon:
            ensure_base_image(daemon.client(), BASE_IMAGE)
            yield daemon.url
    except TestHostError as exc:
        pytest.fail(f"cannot start the build daemon: {exc}", pytrace=False)
