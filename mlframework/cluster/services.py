"""What runs on the hosts: RabbitMQ, Flower and Celery workers as container specs.

Specs are plain data built from the cluster's options; :func:`apply` makes a
host's daemon run one (through the docker SDK client a session gives it),
idempotently: a container whose configuration is unchanged is left alone, a
changed one is replaced. Every container carries the cluster label, which is
how clean-up finds exactly the containers a cluster started.

The broker is the lab's, not a project's: one container per master host
(``mlframework-broker``, labelled with :data:`SHARED`), in which each project
(cluster) has its own user and vhost (:mod:`~mlframework.cluster.broker`).
Flower, the workers and a detached sweep's driver are the project's own.
GPU workers of every project mount the host's GPU lock directory
(:mod:`~mlframework.sweep.trials.gpu_slot`): one trial per GPU across projects.

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
from mlframework.sweep.trials import gpu_slot

log = logging.getLogger(__name__)

LABEL_CLUSTER = "org.mlframework.cluster"
LABEL_ROLE = "org.mlframework.role"
LABEL_CONFIG = "org.mlframework.config-hash"
LABEL_NODE = "org.mlframework.node"  # a worker's Celery node name
#: The cluster label of what projects share on a host (the broker); no cluster name starts with "_".
SHARED = "_shared"
BROKER_NAME = "mlframework-broker"
BROKER_VOLUME = "mlframework-broker-data"
GPU_LOCK_DIR = gpu_slot.HOST_DIR  # on every host, and at the same path in its GPU worker containers

AMQP_PORT = 5672
FLOWER_PORT = 5555  # the first project's Flower; the next ones take the next free port (FLOWER_PORTS)
FLOWER_PORTS = range(FLOWER_PORT, FLOWER_PORT + 100)
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


def broker_spec(image: str, config_path: str) -> ContainerSpec:
    """The host's RabbitMQ, shared by the projects whose master it is (label :data:`SHARED`).

    No project's credentials are in it (they would differ between projects):
    each project's user and vhost are set with ``rabbitmqctl`` afterwards, and
    ``guest`` is deleted (:func:`~mlframework.cluster.broker.converge_accounts`).
    The management UI and the Erlang distribution listen on 127.0.0.1 only
    (config file and Erlang flags): the cluster needs AMQP and nothing else.
    """
    return ContainerSpec(
        name=BROKER_NAME,
        role="broker",
        image=image,
        environment={
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # +sbwt none...: no scheduler spinning while idle; the master often trains too.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} "
            "+sbwt none +sbwtdcpu none +sbwtdio none",
            "RABBITMQ_NODENAME": "rabbit@localhost",
        },
        volumes={
            BROKER_VOLUME: {"bind": "/var/lib/rabbitmq", "mode": "rw"},
            config_path: {"bind": "/etc/rabbitmq/conf.d/90-mlframework.conf", "mode": "ro"},
        },
    )


def flower_spec(
    cluster: str, image: str, broker_url: str, auth: str, code_paths: dict[str, str], port: int = FLOWER_PORT
) -> ContainerSpec:
    """The project's Flower on ``port`` (one per project: it watches one vhost), behind basic authentication."""
    return ContainerSpec(
        name=f"{cluster}-flower",
        role="flower",
        image=image,
        command=celery_command("flower", f"--port={port}"),
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
    trials_per_gpu: int = 1,
) -> list[ContainerSpec]:
    """One worker container per GPU (pinned to it), or one with ``cpu_slots`` processes on a CPU host.

    The synced project and framework code are mounted read-only, so
    ``update_files`` only has to restart the workers for new code to run.
    A GPU container runs ``trials_per_gpu`` trials at once, each holding a slot
    of the GPU's lock on the host (shared with every project there).
    """
    base_env = {
        envvars.BROKER_URL: broker_url,
        envvars.PROJECT: CONTAINER_PROJECT,
        envvars.HOST: host_name,
        envvars.CLUSTER_NAME: cluster,
        "PYTHONPATH": CONTAINER_SOURCE,
        envvars.IMAGE: image,  # for each trial's provenance
        # The trials this host runs at once (per GPU container, or the CPU worker's slots): each
        # trial's OMP_NUM_THREADS/MKL_NUM_THREADS is the CPUs divided by it (sweep/trials/trial_env.py), unless
        # the user set them.
        envvars.SLOTS: str(len(gpus) * trials_per_gpu or cpu_slots),
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
            command=worker_command(f"gpu{gpu}@{host_name}", trials_per_gpu),
            environment={
                **base_env,
                envvars.GPU: gpu,
                envvars.GPU_LOCK_DIR: GPU_LOCK_DIR,
                envvars.TRIALS_PER_GPU: str(trials_per_gpu),
                envvars.GPU_MEMORY_FRACTION: gpu_memory_fraction(trials_per_gpu),
            },
            # The same directory in every project's GPU workers on the host: their trials lock the GPUs there.
            volumes={**_code_volumes(code_paths), GPU_LOCK_DIR: {"bind": GPU_LOCK_DIR, "mode": "rw"}},
            gpu=gpu,
            node=f"gpu{gpu}@{host_name}",
        )
        for gpu in gpus
    ]


def gpu_memory_fraction(trials_per_gpu: int) -> str:
    """A packed trial's share of its GPU's memory, as its environment gives it: ``0.5`` for 2, ``1`` alone."""
    return f"{1 / trials_per_gpu:.3f}".rstrip("0").rstrip(".")


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


def apply(
    client: docker.DockerClient, cluster: str, spec: ContainerSpec, *, keep_running: bool = False
) -> tuple[Any, bool]:
    """Make ``spec`` run on the host; returns (container, whether it was (re)created).

    ``keep_running``: a running container of that name is kept even if its configuration differs (the shared
    broker, which other projects use: it is replaced only when it does not run).
    """
    wanted = spec.config_hash()
    try:
        existing = client.containers.get(spec.name)
    except NotFound:
        existing = None
    if existing is not None:
        if keep_running and existing.status == "running":
            return existing, False
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


def remove_volume(client: docker.DockerClient, name: str) -> list[str]:
    """Remove the data volume ``name`` on the host if it is there (after its container); returns [name] or []."""
    removed = []
    for volume in client.volumes.list(filters={"name": name}):
        if volume.name == name:  # the filter matches substrings
            volume.remove(force=True)
            removed.append(volume.name)
    return removed


def running_broker(client: docker.DockerClient) -> Any | None:
    """The host's shared broker container if it runs, else None."""
    try:
        container = client.containers.get(BROKER_NAME)
    except NotFound:
        return None
    return container if container.status == "running" else None


def other_masters(client: docker.DockerClient, cluster: str) -> list[str]:
    """The other projects whose master is this host (their Flower is here): they use its shared broker."""
    flowers = client.containers.list(all=True, filters={"label": f"{LABEL_ROLE}=flower"})
    return sorted({c.labels.get(LABEL_CLUSTER, "") for c in flowers} - {cluster, ""})


def flower_port(container: Any) -> int | None:
    """The port a Flower container was started with (its ``--port=N``)."""
    for arg in container.attrs.get("Config", {}).get("Cmd") or []:
        if str(arg).startswith("--port="):
            return int(str(arg).split("=", 1)[1])
    return None


def container_env(container: Any) -> dict[str, str]:
    """A container's environment as a dict."""
    pairs = (str(item).split("=", 1) for item in container.attrs.get("Config", {}).get("Env") or [])
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


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
