"""Detached sweeps: the sweep driver runs in a container on the master, so the laptop may go away.

``mlframework sweep PROJECT --detach`` uploads the grid, starts the driver in
the cluster's worker image on the master (the project and framework are
already synced there) and returns with the sweep id. Results are written on
the master under ``~/<remote path>/results/<sweep-id>/``; ``follow`` streams
the driver's output, ``fetch`` copies the results here. The container is
labelled with the cluster, so ``infra_clean.sh`` removes it with the rest.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from mlframework import envvars
from mlframework.cluster import images, services
from mlframework.cluster.bootstrap import ClusterPaths
from mlframework.cluster.config_file import find_project
from mlframework.cluster.recorded import broker_endpoint, load_cluster
from mlframework.cluster.spec import ClusterSpec
from mlframework.cluster.ssh.remote import HostSession, SSHOptions
from mlframework.exceptions import ConfigError, SweepError
from mlframework.sweep.wire import lab
from mlframework.sweep.wire.ids import check_sweep_id

log = logging.getLogger(__name__)

CONTAINER_RESULTS = "/opt/mlframework/results"


def _container_name(spec: ClusterSpec, sweep_id: str) -> str:
    return f"{spec.cluster_name}-sweep-{sweep_id}"


def _master_session(spec: ClusterSpec, ssh: SSHOptions) -> HostSession:
    if spec.master is None:
        raise ConfigError("detached sweeps run on the master: this cluster has none (infrainit -m)")
    return HostSession(spec.master, ssh).connect()


def start_detached(
    repo_root: Path,
    ssh: SSHOptions,
    sweep_id: str,
    grid_file: Path,
    sweep_options: Sequence[str],
) -> str:
    """Start the driver of sweep ``sweep_id`` on the master; returns the master's name.

    ``sweep_options`` are further ``mlframework sweep`` options (``--task``,
    ``--metric``, ``--retries``, ...), passed on as they are.
    """
    check_sweep_id(sweep_id)
    spec, secrets = load_cluster(repo_root)
    with _master_session(spec, ssh) as session:
        paths = ClusterPaths(session.remote_path(spec.remote_path))
        results = f"{paths.root}/results"
        session.write_file(f"{results}/{sweep_id}.parameters.yml", grid_file.read_bytes())
        # The driver writes the results as the SSH user, so that they are that user's files on the master.
        uid_gid = session.run('printf \'%s:%s\' "$(id -u)" "$(id -g)"', timeout=30).stdout.strip()
        project_dir = find_project(spec, repo_root)
        image = images.image_tag(spec.cluster_name, repo_root, project_dir, spec.base_image)
        client = session.docker()
        if not images.has_image(client, image):
            raise SweepError(f"{spec.master}: worker image {image} is missing; run scripts/infrainit.sh -f")
        host, port = broker_endpoint(spec)
        command = [
            "python",
            "-m",
            "mlframework",
            "sweep",
            services.CONTAINER_PROJECT,
            "-p",
            f"{CONTAINER_RESULTS}/{sweep_id}.parameters.yml",
            "--results",
            CONTAINER_RESULTS,
            "--sweep-id",
            sweep_id,
            *sweep_options,
        ]
        container = services.ContainerSpec(
            name=_container_name(spec, sweep_id),
            role="sweep",
            image=image,
            command=command,
            environment={
                envvars.BROKER_URL: secrets.broker_url(host, port),
                envvars.OWNER: lab.owner(),  # the lab sees who started it, not the master's container user
                "PYTHONPATH": services.CONTAINER_SOURCE,
                "HOME": "/tmp",
                "COLUMNS": "160",
            },
            volumes={
                paths.project: {"bind": services.CONTAINER_PROJECT, "mode": "ro"},
                paths.source: {"bind": services.CONTAINER_SOURCE, "mode": "ro"},
                results: {"bind": CONTAINER_RESULTS, "mode": "rw"},
            },
            user=uid_gid,
        )
        _, created = services.apply(client, spec.cluster_name, container)
        if not created:
            raise SweepError(f"{spec.master}: sweep {sweep_id} is already running there")
        log.info("started %s on %s: %s", container.name, spec.master, shlex.join(command))
    return str(spec.master)


def follow(repo_root: Path, ssh: SSHOptions, sweep_id: str, emit: Callable[[str], None]) -> int:
    """Stream the output of detached sweep ``sweep_id`` until it ends; returns its exit status."""
    check_sweep_id(sweep_id)
    spec, _ = load_cluster(repo_root)
    with _master_session(spec, ssh) as session:
        client = session.docker()
        name = _container_name(spec, sweep_id)
        try:
            container = client.containers.get(name)
        except Exception:
            raise SweepError(f"{spec.master}: no detached sweep {sweep_id} (container {name} not found)") from None
        for line in _lines(container.logs(stream=True, follow=True)):
            emit(line)
        return int(container.wait().get("StatusCode", 1))


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def fetch(repo_root: Path, ssh: SSHOptions, sweep_id: str, destination: Path) -> Path:
    """Copy the results of detached sweep ``sweep_id`` from the master to ``destination/<sweep-id>``."""
    check_sweep_id(sweep_id)
    spec, _ = load_cluster(repo_root)
    with _master_session(spec, ssh) as session:
        remote = str(PurePosixPath(session.remote_path(spec.remote_path)) / "results" / sweep_id)
        target = destination / sweep_id
        copied = session.download_tree(remote, target)
        if not copied:
            raise SweepError(f"{spec.master}: no results of sweep {sweep_id} in {remote}")
    return target
