"""Shared fixtures: a private RabbitMQ broker for the session; markers by folder."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from testbed.rabbitmq import RabbitMQNode, rabbitmq_bin_dir

_HERE = Path(__file__).parent

# Sweeps run by tests do not render report.html after they end (a render costs seconds of CPU on this
# 2-core machine, and hundreds of test sweeps would pay it); the tests of the live report turn it on.
os.environ.setdefault("MLFRAMEWORK_LIVE_REPORT", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/integration/** -> ``integration``, tests/cluster/** -> ``cluster``."""
    for item in items:
        parts = item.path.relative_to(_HERE).parts if item.path.is_relative_to(_HERE) else ()
        if parts and parts[0] in ("integration", "cluster"):
            item.add_marker(parts[0])


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQNode]:
    """A started private RabbitMQ node (see testbed/rabbitmq.py); stopped after the session."""
    if rabbitmq_bin_dir() is None:
        # Not a skip: integration tests are part of every run (shared/STYLE.md).
        pytest.fail(
            "rabbitmq-server is not installed; run the tests with scripts/test.sh, "
            "which installs it (Debian package rabbitmq-server)",
            pytrace=False,
        )
    node = RabbitMQNode()
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def vhost_url(rabbitmq) -> Iterator[str]:
    """A broker URL on a vhost made for this test alone (removed afterwards)."""
    name = f"mlf-test-{secrets.token_hex(4)}"
    rabbitmq.ctl("add_vhost", name)
    rabbitmq.ctl("set_permissions", "-p", name, rabbitmq.user, ".*", ".*", ".*")
    base = rabbitmq.url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{quote(name, safe='')}"
    finally:
        rabbitmq.ctl("delete_vhost", name)
