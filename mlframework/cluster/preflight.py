"""What infrainit checks on every host before it starts anything, and what it learns there.

SSH with checked host keys, the host's own name, Docker usable by the login
user, GPUs (``nvidia-smi -L``) and, where workers will use them, Docker's
``nvidia`` runtime; on the master the broker's ports free (unless the
shared broker already runs there) and a port for the project's Flower; on
worker hosts, the workers of other projects (:class:`Neighbour`) that will
share the host's CPUs or GPUs. All hosts at once; one
:class:`~mlframework.exceptions.HostsFailed` names every bad host.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from mlframework import envvars
from mlframework.cluster import services
from mlframework.cluster.gpus import NVIDIA_SMI_LIST, parse_gpu_list
from mlframework.cluster.hosts import Host
from mlframework.cluster.spec import ClusterSpec
from mlframework.cluster.ssh.group import on_hosts
from mlframework.cluster.ssh.remote import HostSession
from mlframework.exceptions import HostError

# Ports the shared broker listens on (host networking): AMQP, and on loopback the
# management UI and the Erlang distribution. Not epmd's 4369: an epmd the host
# already runs (any Erlang install starts one) is shared, as epmd is meant to be.
# Flower's port is each project's own (services.FLOWER_PORTS).
BROKER_PORTS = (services.AMQP_PORT, services.MANAGEMENT_PORT, services.DISTRIBUTION_PORT)


@dataclass(frozen=True)
class Neighbour:
    """Another project's workers on a host: what infrainit tells about sharing it."""

    cluster: str  # its cluster name (what tells projects apart)
    gpus: tuple[str, ...] = ()  # the GPUs its workers use
    cpu_slots: int = 0  # the slots of its CPU worker

    def describe(self) -> str:
        """``project 'a' runs 2 CPU slot(s)`` or ``... GPU worker(s) on GPU 0, 1``."""
        if self.gpus:
            return f"project {self.cluster!r} runs workers on GPU {', '.join(self.gpus)}"
        return f"project {self.cluster!r} runs a worker with {self.cpu_slots} slot(s)"


@dataclass
class HostFacts:
    """What preflight learned about one host."""

    host: Host
    hostname: str  # the host's own name: worker node names and results' "host" column
    gpus: list[str] = field(default_factory=list)  # GPU indices from nvidia-smi -L
    cpus: int = 1
    home: str = ""
    flower_port: int | None = None  # on the master: the port this project's Flower gets
    neighbours: list[Neighbour] = field(default_factory=list)  # other projects' workers on the host


def _ports_in_use(session: HostSession, ports: tuple[int, ...]) -> list[int]:
    probe = (
        "import socket,sys\n"
        "busy=[]\n"
        "for p in map(int, sys.argv[1:]):\n"
        "    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    try: s.bind(('0.0.0.0', p))\n"
        "    except OSError: busy.append(p)\n"
        "    finally: s.close()\n"
        "print(' '.join(map(str, busy)))\n"
    )
    out = session.run(f"python3 -c {shlex.quote(probe)} {' '.join(map(str, ports))}", timeout=30).stdout
    return [int(p) for p in out.split()]


def neighbours(client: Any, cluster: str) -> list[Neighbour]:
    """The worker containers of other projects (clusters) on a host, per project, from their labels and env."""
    found: dict[str, Neighbour] = {}
    for container in client.containers.list(filters={"label": f"{services.LABEL_ROLE}=worker"}):
        other = container.labels.get(services.LABEL_CLUSTER, "")
        if not other or other == cluster:
            continue
        env = services.container_env(container)
        seen = found.get(other, Neighbour(other))
        gpu = env.get(envvars.GPU)
        if gpu is not None:
            seen = Neighbour(other, tuple(sorted({*seen.gpus, gpu}, key=lambda g: (len(g), g))), seen.cpu_slots)
        else:
            slots = int(env.get(envvars.SLOTS) or 0)
            seen = Neighbour(other, seen.gpus, seen.cpu_slots + slots)
        found[other] = seen
    return [found[name] for name in sorted(found)]


def _master_ports(spec: ClusterSpec, session: HostSession, client: Any, cluster: str) -> int:
    """Check the broker's and Flower's ports on the master; returns the port this project's Flower gets.

    The shared broker's ports are not "in use" when it is the one running there (or this cluster's broker of an
    older mlframework, which infrainit replaces).
    """
    host = str(session.host)
    ours = {c.name: c for c in services.cluster_containers(client, cluster) if c.status == "running"}
    if services.running_broker(client) is None and f"{cluster}-broker" not in ours:
        busy = _ports_in_use(session, BROKER_PORTS)
        if busy:
            others = [
                c.name
                for c in client.containers.list(filters={"label": f"{services.LABEL_ROLE}=broker"})
                if c.name != services.BROKER_NAME
            ]
            hint = f" (by {', '.join(others)}: remove it with its project's ./infra_clean.sh)" if others else ""
            raise HostError(host, f"port(s) {', '.join(map(str, busy))} already in use{hint}; the broker needs them")
    flower = ours.get(f"{cluster}-flower")
    running_port = services.flower_port(flower) if flower is not None else None
    if spec.flower_port is not None:
        if spec.flower_port != running_port and _ports_in_use(session, (spec.flower_port,)):
            raise HostError(host, f"--flower-port {spec.flower_port}: already in use; Flower needs it")
        return spec.flower_port
    if running_port is not None:
        return running_port
    taken = set(_ports_in_use(session, tuple(services.FLOWER_PORTS)))
    free = [port for port in services.FLOWER_PORTS if port not in taken]
    if not free:
        raise HostError(
            host, f"ports {services.FLOWER_PORTS[0]}-{services.FLOWER_PORTS[-1]} all in use: give --flower-port"
        )
    return free[0]


def preflight(spec: ClusterSpec, sessions: dict[Host, HostSession], cluster: str) -> dict[Host, HostFacts]:
    """Check every host before anything is started; HostsFailed names each bad host."""

    def check(session: HostSession) -> HostFacts:
        session.connect()
        hostname = session.run("hostname", timeout=30).stdout.strip() or session.host.address
        client = session.docker()
        facts = HostFacts(session.host, hostname, home=session.home)
        facts.cpus = int(session.run("nproc 2>/dev/null || echo 1", timeout=30).stdout.strip() or 1)
        facts.gpus = parse_gpu_list(session.run(f"{NVIDIA_SMI_LIST} 2>/dev/null || true", timeout=60).stdout)
        if facts.gpus and session.host in spec.workers:
            runtimes = client.info().get("Runtimes") or {}
            if "nvidia" not in runtimes:
                # Caught here, not as a container that fails to start after files and images are in place.
                raise HostError(
                    str(session.host),
                    f"{len(facts.gpus)} GPU(s) (`{NVIDIA_SMI_LIST}`) but Docker has no 'nvidia' runtime: install the "
                    f"NVIDIA Container Toolkit (on Ubuntu: nvdocker_install/install_ubuntu.sh {session.host.target})",
                )
        if session.host in spec.workers:
            facts.neighbours = neighbours(client, cluster)
        if session.host == spec.master:
            facts.flower_port = _master_ports(spec, session, client, cluster)
        return facts

    results = on_hosts("preflight", list(sessions.values()), check)
    return {facts.host: facts for facts in results}
