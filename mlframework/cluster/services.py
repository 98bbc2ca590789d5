"""What runs on the hosts: RabbitMQ, Flower and Celery workers as container specs.

Specs are plain data built from the cluster's options; :func:`apply` makes a
host's daemon run one (through the docker SDK client a session gives it),
idempotently: a container whose configuration is unchanged is left alone, a
changed one is replaced. Every container carries the cluster label, which is
how clean-up finds exactly the containers a cluster started.

All containers use host networking: a worker reaches the broker at the
master's address, and nothing depends on Docker's bridge or port mapping.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
from docker.errors import NotFound

from mlframework import envvars
from mlframework.cluster.worker_command import celery_command, worker_command

log = logging.getLogger(__name__)

LABEL_CLUSTER = "org.mlframework.cluster"
LABEL_ROLE = "org.mlframework.role"
LABEL_CONFIG = "org.mlframework.config-hash"
LABEL_NODE = "org.mlframework.node"  # a worker's Celery node name

AMQP_PORT = 5672
FLOWER_PORT = 5555
MANAGEMENT_PORT = 15672
DISTRIBUTION_PORT = 25672  # Erlang distribution (rabbitmqctl), on 127.0.0.1 only

# Inside the worker image (infra/worker/Dockerfile): where the synced code is mounted.
CONTAINER_PROJECT = "/opt/mlframework/project"
CONTAINER_SOURCE = "/opt/mlframework/src"


@dataclass(frozen=True)
class ContainerSpec:
    """One container as the docker API needs it."""

    name: str  # unique on the host: <cluster>-<role>[-<slot>]
    role: str  # broker | flower | worker | sweep (a detached sweep's driver)
    image: str
    command: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # host path or volume -> bind, mode
    gpu: str | None = None  # the host GPU this container is pinned to
    user: str | None = None
    node: str | None = None  # a worker's Celery node name (what `celery status` lists)

    def config_hash(self) -> str:
        """Changes whenever anything that would need a new container changes."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def broker_spec(cluster: str, image: str, user: str, password: str, vhost: str, config_path: str) -> ContainerSpec:
    """RabbitMQ with the cluster's own user and vhost; no ``guest`` over the network.

    The management UI and the Erlang distribution listen on 127.0.0.1 only
    (config file and Erlang flags): the cluster needs AMQP and nothing else.
    """
    return ContainerSpec(
        name=f"{cluster}-broker",
        role="broker",
        image=image,
        environment={
            "RABBITMQ_DEFAULT_USER": user,
            "RABBITMQ_DEFAULT_PASS": password,
            "RABBITMQ_DEFAULT_VHOST": vhost,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # +sbwt none...: no scheduler spinning while idle; the master often trains too.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} "
            "+sbwt none +sbwtdcpu none +sbwtdio none",
            "RABBITMQ_NODENAME": "rabbit@localhost",
        },
        volumes={
            broker_volume(cluster): {"bind": "/var/lib/rabbitmq", "mode": "rw"},
            config_path: {"bind": "/etc/rabbitmq/conf.d/90-mlframework.conf", "mode": "ro"},
        },
    )


def flower_spec(cluster: str, image: str, broker_url: str, auth: str, code_paths: dict[str, str]) -> ContainerSpec:
    """Flower on port 5555, behind basic authentication (API included)."""
    return ContainerSpec(
        name=f"{cluster}-flower",
        role="flower",
        image=image,
        command=celery_command("flower", f"--port={FLOWER_PORT}"),
        environment={
            envvars.BROKER_URL: broker_url,
            "FLOWER_BASIC_AUTH": auth,
            "PYTHONPATH": CONTAINER_SOURCE,
        },
        volumes=_code_volumes(code_paths),
    )


def _code_volumes(code_paths: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        code_paths["project"]: {"bind": CONTAINER_PROJECT, "mode": "ro"},
        code_paths["source"]: {"bind": CONTAINER_SOURCE, "mode": "ro"},
    }


def worker_specs(
    cluster: str,
    image: str,
    broker_url: str,
    host_name: str,
    gpus: list[str],
    cpu_slots: int,
    code_paths: dict[str, str],
) -> list[ContainerSpec]:
    """One worker container per GPU (pinned to it), or one with ``cpu_slots`` processes on a CPU host.

    The synced project and framework code are mounted read-only, so
    ``update_files`` only has to restart the workers for new code to run.
    """
    base_env = {
        envvars.BROKER_URL: broker_url,
        envvars.PROJECT: CONTAINER_PROJECT,
        envvars.HOST: host_name,
        "PYTHONPATH": CONTAINER_SOURCE,
        envvars.IMAGE: image,  # for each trial's provenance
        # The trials this host runs at once (one per GPU container, or the CPU worker's slots): each
        # trial's OMP_NUM_THREADS/MKL_NUM_THREADS is the CPUs divided by it (sweep/trials/trial_env.py), unless
        # the user set them.
        envvars.SLOTS: str(len(gpus) or cpu_slots),
    }
    if not gpus:
        return [
            ContainerSpec(
                name=f"{cluster}-worker-cpu",
                role="worker",
                image=image,
                command=worker_command(f"cpu@{host_name}", cpu_slots),
                environment=base_env,
                volumes=_code_volumes(code_paths),
                node=f"cpu@{host_name}",
            )
        ]
    return [
        ContainerSpec(
            name=f"{cluster}-worker-gpu{gpu}",
            role="worker",
            image=image,
            command=worker_command(f"gpu{gpu}@{host_name}", 1),
            environment={**base_env, envvars.GPU: gpu},
            volumes=_code_volumes(code_paths),
            gpu=gpu,
            node=f"gpu{gpu}@{host_name}",
        )
        for gpu in gpus
    ]


def run_options(cluster: str, spec: ContainerSpec) -> dict[str, Any]:
    """The docker SDK ``containers.run`` keyword arguments that start ``spec`` (pure: no daemon)."""
    device_requests = None
    if spec.gpu is not None:
        # docker run --gpus device=N: only this GPU is visible inside, as CUDA device 0.
        device_requests = [docker.types.DeviceRequest(device_ids=[spec.gpu], capabilities=[["gpu"]])]
    return {
        "image": spec.image,
        "command": spec.command,
        "name": spec.name,
        "detach": True,
        "environment": spec.environment,
        "volumes": spec.volumes,
        "labels": {
            LABEL_CLUSTER: cluster,
            LABEL_ROLE: spec.role,
            LABEL_CONFIG: spec.config_hash(),
            **({LABEL_NODE: spec.node} if spec.node else {}),
        },
        "network_mode": "host",
        # Services come back by themselves; a detached sweep's driver is resumed by hand (--resume), never twice.
        "restart_policy": {"Name": "no" if spec.role == "sweep" else "unless-stopped"},
        "device_requests": device_requests,
        "user": spec.user,
        # celery as PID 1 would not reap the orphans a training script may leave behind.
        "init": spec.role != "broker",
        # Training data loaders use shared memory; Docker's 64 MB default breaks PyTorch workers.
        "shm_size": "1g" if spec.role == "worker" else None,
    }


def apply(client: docker.DockerClient, cluster: str, spec: ContainerSpec) -> tuple[Any, bool]:
    """Make ``spec`` run on the host; returns (container, whether it was (re)created)."""
    wanted = spec.config_hash()
    try:
        existing = client.containers.get(spec.name)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.labels.get(LABEL_CONFIG) == wanted:
            if existing.status != "running":
                existing.start()
            return existing, False
        existing.remove(force=True)
    options = run_options(cluster, spec)
    return client.containers.run(options.pop("image"), options.pop("command"), **options), True


def cluster_containers(client: docker.DockerClient, cluster: str, role: str | None = None) -> list[Any]:
    """The containers this cluster started on the host (running or not)."""
    filters = {"label": [f"{LABEL_CLUSTER}={cluster}"] + ([f"{LABEL_ROLE}={role}"] if role else [])}
    return list(client.containers.list(all=True, filters=filters))


def remove_cluster(client: docker.DockerClient, cluster: str) -> list[str]:
    """Remove every container of the cluster on the host; returns their names."""
    removed = []
    for container in cluster_containers(client, cluster):
        container.remove(force=True)
        removed.append(container.name)
    return removed


def broker_volume(cluster: str) -> str:
    """The broker's durable data volume: its queues, their messages, its users."""
    return f"{cluster}-broker-data"


def remove_volumes(client: docker.DockerClient, cluster: str) -> list[str]:
    """Remove the cluster's data volumes on the host (after its containers); returns their names."""
    removed = []
    for volume in client.volumes.list(filters={"name": broker_volume(cluster)}):
        if volume.name == broker_volume(cluster):  # the filter matches substrings
            volume.remove(force=True)
            removed.append(volume.name)
    return removed


def restart_workers(client: docker.DockerClient, cluster: str, timeout: int = 30) -> list[str]:
    """Restart the cluster's workers on the host (a warm shutdown first: running trials are re-queued)."""
    names = []
    for container in cluster_containers(client, cluster, role="worker"):
        container.restart(timeout=timeout)
        names.append(container.name)
    return names


def worker_nodes(client: docker.DockerClient, cluster: str) -> list[str]:
    """Celery node names of the cluster's worker containers on the host."""
    containers = cluster_containers(client, cluster, role="worker")
    return sorted(c.labels[LABEL_NODE] for c in containers if LABEL_NODE in c.labels)
