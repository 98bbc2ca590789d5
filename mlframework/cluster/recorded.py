"""The cluster infrainit recorded, read back: its options and credentials, its broker, Flower and workers.

``config.sh`` and the secrets file say what was started; the functions here
say how this machine (or the workers) reach it: the broker's endpoint and URL,
Flower's address, and which worker nodes answer a ping.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from kombu.exceptions import OperationalError

from mlframework.cluster import services
from mlframework.cluster.config_file import load_config
from mlframework.cluster.secrets import DEFAULT_SECRETS_PATH, ClusterSecrets
from mlframework.cluster.spec import CONFIG_FILE, ClusterSpec
from mlframework.exceptions import ConfigError, ServiceError, SweepError
from mlframework.sweep.wire import lab
from mlframework.sweep.wire.app import BrokerSettings, create_app
from mlframework.sweep.wire.connection import connect
from mlframework.sweep.wire.lab import SweepState


def _this_machine_address(toward: str) -> str:
    """The address of this machine on the route to ``toward`` (what remote workers reach)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((toward, 9))
        return str(probe.getsockname()[0])


def broker_endpoint(spec: ClusterSpec, from_here: bool = False) -> tuple[str, int]:
    """(host, port) of the broker: as workers reach it, or (``from_here``) as this machine does."""
    if spec.master is not None and spec.master.is_local:
        remote = [w for w in spec.workers if not w.is_local]
        if from_here or not remote:
            return "127.0.0.1", spec.broker_port
        return spec.broker_endpoint(_this_machine_address(remote[0].address))
    return spec.broker_endpoint()


def flower_url(spec: ClusterSpec) -> str | None:
    """Flower's address as this machine reaches it; None when no master is started (``-b``)."""
    if spec.master is None:
        return None
    host = "127.0.0.1" if spec.master.is_local else spec.master.address
    return f"http://{host}:{spec.flower_port or services.FLOWER_PORT}/"


def load_cluster(repo_root: Path, secrets_path: Path | None = None) -> tuple[ClusterSpec, ClusterSecrets]:
    """The cluster infrainit recorded: ``config.sh`` and the secrets file."""
    config = repo_root / CONFIG_FILE
    if not config.exists():
        raise ConfigError(f"{config}: not found; run scripts/infrainit.sh first")
    spec = ClusterSpec.from_config(load_config(config), str(config))
    secrets_file = secrets_path or repo_root / DEFAULT_SECRETS_PATH
    if not secrets_file.exists():
        raise ConfigError(f"{secrets_file}: no cluster credentials; run scripts/infrainit.sh first")
    return spec, ClusterSecrets.load(secrets_file)


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach the recorded cluster by hand, credentials included (``mlframework secrets``)."""

    cluster_name: str
    secrets_file: Path  # where the credentials were read from
    secrets: ClusterSecrets  # its repr() hides the passwords
    broker_url: str = field(repr=False)  # as this machine reaches the broker, password included
    flower_url: str | None = None  # None when infrainit started no master (-b)


def cluster_access(repo_root: Path, secrets_path: Path | None = None) -> ClusterAccess:
    """The recorded cluster's credentials and addresses, for a user who asked to see them.

    The secrets file is looked for first: before infrainit has run, the error
    names that file.
    """
    secrets_file = secrets_path or repo_root / DEFAULT_SECRETS_PATH
    if not os.path.lexists(secrets_file):
        raise ConfigError(f"{secrets_file}: no secrets file yet; scripts/infrainit.sh creates it")
    spec, secrets = load_cluster(repo_root, secrets_file)
    host, port = broker_endpoint(spec, from_here=True)
    return ClusterAccess(spec.cluster_name, secrets_file, secrets, secrets.broker_url(host, port), flower_url(spec))


def cluster_broker(repo_root: Path, secrets_path: Path | None = None) -> BrokerSettings:
    """Broker settings for sweeps on the recorded cluster, as this machine reaches it."""
    spec, secrets = load_cluster(repo_root, secrets_path)
    host, port = broker_endpoint(spec, from_here=True)
    return BrokerSettings(secrets.broker_url(host, port))


def worker_status(broker: BrokerSettings, timeout: float = 3.0) -> list[str]:
    """Node names of the workers that answer a ping (as ``celery status``)."""
    app = create_app(broker)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except (OperationalError, OSError) as exc:
        raise ServiceError(f"cannot reach the broker at {broker.redacted_url()}: {exc}") from None
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


def live_sweeps(broker: BrokerSettings, timeout: float = 3.0) -> list[SweepState]:
    """The live sweeps of the broker, as their drivers announce them (``sweep/wire/lab.py``); [] in embedded mode."""
    app = create_app(broker)
    try:
        connection = connect(app, broker, timeout=timeout)
        try:
            return lab.live_sweeps(connection) if lab.supported(connection) else []
        finally:
            connection.release()
    except SweepError as exc:  # connect()'s one line
        raise ServiceError(str(exc)) from None
    except (OperationalError, OSError) as exc:
        raise ServiceError(f"cannot reach the broker at {broker.redacted_url()}: {exc}") from None
    finally:
        app.close()
