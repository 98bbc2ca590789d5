"""What infrainit checks on every host before it starts anything, and what it learns there.

SSH with checked host keys, the host's own name, Docker usable by the login
user, GPUs (``nvidia-smi -L``) and, where workers will use them, Docker's
``nvidia`` runtime; on the master the broker's ports free (unless this
cluster's broker already runs there). All hosts at once; one
:class:`~mlframework.exceptions.HostsFailed` names every bad host.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from mlframework.cluster import services
from mlframework.cluster.gpus import NVIDIA_SMI_LIST, parse_gpu_list
from mlframework.cluster.hosts import Host
from mlframework.cluster.spec import ClusterSpec
from mlframework.cluster.ssh.group import on_hosts
from mlframework.cluster.ssh.remote import HostSession
from mlframework.exceptions import HostError

# Ports the master's containers listen on (host networking): AMQP, Flower, and on
# loopback the management UI and the Erlang distribution. Not epmd's 4369: an
# epmd the host already runs (any Erlang install starts one) is shared, as epmd is meant to be.
MASTER_PORTS = (services.AMQP_PORT, services.FLOWER_PORT, services.MANAGEMENT_PORT, services.DISTRIBUTION_PORT)


@dataclass
class HostFacts:
    """What preflight learned about one host."""

    host: Host
    hostname: str  # the host's own name: worker node names and results' "host" column
    gpus: list[str] = field(default_factory=list)  # GPU indices from nvidia-smi -L
    cpus: int = 1
    home: str = ""


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
        if session.host == spec.master:
            ours = {c.name for c in services.cluster_containers(client, cluster) if c.status == "running"}
            if f"{cluster}-broker" not in ours:
                busy = _ports_in_use(session, MASTER_PORTS)
                if busy:
                    raise HostError(
                        str(session.host), f"port(s) {', '.join(map(str, busy))} already in use; the master needs them"
                    )
        return facts

    results = on_hosts("preflight", list(sessions.values()), check)
    return {facts.host: facts for facts in results}
