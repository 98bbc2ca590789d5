"""infrainit, update-files and clean as ordered lifecycles over the hosts.

infrainit, in order (each step in parallel across hosts, so the total time is
about flat in the number of hosts; a failure names every host that failed):

1. preflight  -- SSH with checked host keys, hostname, Docker usable, GPUs
   (``nvidia-smi -L``) and the NVIDIA runtime where there are GPUs, the
   broker's ports free on the master (:mod:`~mlframework.cluster.preflight`);
2. sync       -- framework, project and service config to ``~/<remote path>``
   (only changed files);
3. images     -- worker image built on every host, or built here and shipped
   with the broker image (every image a host lacks, by image id, once);
   the broker image present on the master;
4. master     -- RabbitMQ (the host's, shared by every project whose master it
   is), this project's user, password, vhost and permissions set in it from the
   secrets file (:mod:`~mlframework.cluster.broker`), then the project's
   Flower (basic auth) on its own port;
5. workers    -- one container per GPU, or one with N CPU slots; other
   projects' workers on the same host are reported (they share its CPUs, and
   its GPUs one trial at a time: :mod:`~mlframework.sweep.trials.gpu_slot`);
6. record     -- ``config.sh`` (options, without ``-f``; the Flower port
   chosen), the secrets file (mode 0600), and ``infra_clean.sh`` that removes
   what was started.

Running it again converges: unchanged containers are left alone. What was
recorded is read back by :mod:`~mlframework.cluster.recorded`.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlframework import envvars
from mlframework.cluster import broker as broker_accounts
from mlframework.cluster import diagnose, images, services, shipping
from mlframework.cluster.config_file import find_project, save_config
from mlframework.cluster.hosts import Host
from mlframework.cluster.preflight import HostFacts, preflight
from mlframework.cluster.recorded import broker_endpoint, cluster_broker, flower_url, load_cluster, worker_status
from mlframework.cluster.secrets import DEFAULT_SECRETS_PATH, ClusterSecrets
from mlframework.cluster.spec import CONFIG_FILE, ClusterSpec
from mlframework.cluster.ssh.group import on_hosts
from mlframework.cluster.ssh.remote import HostSession, SSHOptions
from mlframework.exceptions import ServiceError
from mlframework.sweep.wire.app import BrokerSettings

log = logging.getLogger(__name__)

CLEAN_SCRIPT = "infra_clean.sh"
# Where the shared broker's rabbitmq.conf goes on the master, relative to the login user's home.
BROKER_CONF_DIR = ".mlframework/broker"
# Seconds a (re)started worker container gets to connect and answer a ping.
WORKER_START_TIMEOUT = 120.0

Report = Callable[[str], None]


@dataclass
class ClusterPaths:
    """Where the code lives on a host (absolute), for bind mounts."""

    root: str  # ~/<remote path>

    @property
    def source(self) -> str:
        return f"{self.root}/src"

    @property
    def project(self) -> str:
        return f"{self.root}/project"

    @property
    def rabbitmq_conf(self) -> str:
        return f"{self.root}/infra/rabbitmq/rabbitmq.conf"

    def code(self) -> dict[str, str]:
        return {"project": self.project, "source": self.source}


def _sessions(spec: ClusterSpec, ssh: SSHOptions) -> dict[Host, HostSession]:
    return {host: HostSession(host, ssh) for host in spec.hosts_in_use}


@contextlib.contextmanager
def _open(spec: ClusterSpec, ssh: SSHOptions) -> Iterator[dict[Host, HostSession]]:
    sessions = _sessions(spec, ssh)
    try:
        yield sessions
    finally:
        for session in sessions.values():
            session.close()


def sync_files(spec: ClusterSpec, sessions: dict[Host, HostSession], repo_root: Path, project_dir: Path) -> int:
    """Copy framework, project and service config to ``~/<remote path>`` on every host; returns files changed."""

    def sync(session: HostSession) -> int:
        paths = ClusterPaths(session.remote_path(spec.remote_path))
        changed = session.sync_tree(repo_root / "mlframework", f"{paths.source}/mlframework")
        changed += session.sync_tree(project_dir, paths.project)
        changed += session.sync_tree(repo_root / "infra", f"{paths.root}/infra")
        return changed

    return sum(on_hosts("copying files", list(sessions.values()), sync))


def _worker_hosts(spec: ClusterSpec, sessions: dict[Host, HostSession]) -> list[HostSession]:
    return [sessions[host] for host in spec.workers]


def provide_images(
    spec: ClusterSpec, sessions: dict[Host, HostSession], repo_root: Path, project_dir: Path, report: Report
) -> str:
    """Put the worker image on every worker host (and the master, for Flower); returns its tag.

    With ``ship`` the broker image goes to the master as well (:mod:`~mlframework.cluster.shipping`).
    """
    context = images.worker_context(repo_root, project_dir)
    tag = images.image_tag(spec.cluster_name, repo_root, project_dir, spec.base_image)
    master = [sessions[spec.master]] if spec.master else []
    targets = list({*(_worker_hosts(spec, sessions)), *master})
    if spec.image_source == "ship":
        local = images.local_daemon()
        if not images.has_image(local, tag):
            report(f"building {tag} here")
        images.build(local, context, tag, spec.base_image, "local")
        needs = [(s, [tag, *([spec.broker_image] if s in master else [])]) for s in targets]
        shipping.ship_images(local, needs, report)
        return tag
    present = on_hosts("looking for the worker image", targets, lambda s: images.has_image(s.docker(), tag))
    targets = [session for session, has in zip(targets, present) if not has]
    if not targets:
        report(f"{tag} already on every host")
    else:
        report(f"building {tag} on {len(targets)} host(s)")
        on_hosts(
            "building the worker image",
            targets,
            lambda s: images.build(s.docker(), context, tag, spec.base_image, str(s.host)),
        )
    return tag


def start_master(
    spec: ClusterSpec,
    session: HostSession,
    secrets: ClusterSecrets,
    worker_image: str,
    report: Report,
    repo_root: Path,
    flower_port: int = services.FLOWER_PORT,
) -> None:
    """RabbitMQ (shared by the projects whose master this host is), then the project's Flower, on the master."""
    client = session.docker()
    images.ensure_image(client, spec.broker_image, str(session.host))
    paths = ClusterPaths(session.remote_path(spec.remote_path))
    # The shared broker's configuration lives outside every project's directory, so that its spec (and so its
    # container) is the same whichever project starts it.
    conf_dir = session.remote_path(BROKER_CONF_DIR)
    session.sync_tree(repo_root / "infra" / "rabbitmq", conf_dir)
    for legacy in services.cluster_containers(client, spec.cluster_name, role="broker"):
        legacy.remove(force=True)  # this project's own broker, from before brokers were shared
        report(f"{session.host}: removed {legacy.name} (the shared {services.BROKER_NAME} replaces it)")
    broker = services.broker_spec(spec.broker_image, f"{conf_dir}/rabbitmq.conf")
    container, created = services.apply(client, services.SHARED, broker, keep_running=True)
    report(
        f"{session.host}: RabbitMQ {'started' if created else 'already running'} "
        f"({services.BROKER_NAME}, shared by the projects whose master this host is)"
    )
    # The data volume may hold an older cluster's accounts: set ours from the secrets file, every time.
    broker_accounts.wait_for_node(container, str(session.host))
    stale = broker_accounts.converge_accounts(container, str(session.host), secrets)
    report(
        f"{session.host}: broker user {secrets.rabbitmq_user} and vhost set from the secrets file"
        + (f" (removed stale user(s) {', '.join(stale)})" if stale else "")
    )
    host, port = broker_endpoint(spec, from_here=True)
    address = "127.0.0.1" if session.host.is_local else session.host.address
    url = secrets.broker_url(address if host == "127.0.0.1" else host, port)
    broker_accounts.wait_for_login(url, str(session.host), 60, container)
    worker_host, worker_port = broker_endpoint(spec)
    flower = services.flower_spec(
        spec.cluster_name,
        worker_image,
        secrets.broker_url(worker_host, worker_port),
        secrets.flower_basic_auth,
        paths.code(),
        flower_port,
    )
    _, created = services.apply(client, spec.cluster_name, flower)
    report(f"{session.host}: Flower {'started' if created else 'already running'} on port {flower_port}")


def start_workers(
    spec: ClusterSpec,
    sessions: dict[Host, HostSession],
    facts: dict[Host, HostFacts],
    secrets: ClusterSecrets,
    worker_image: str,
    report: Report,
) -> dict[str, str]:
    """Worker containers on every worker host; returns their Celery node names -> host."""
    host, port = broker_endpoint(spec)
    url = secrets.broker_url(host, port)

    def start(session: HostSession) -> dict[str, str]:
        info = facts[session.host]
        paths = ClusterPaths(session.remote_path(spec.remote_path))
        specs = services.worker_specs(
            spec.cluster_name,
            worker_image,
            url,
            info.hostname,
            info.gpus,
            spec.cpu_slots or info.cpus,
            paths.code(),
            spec.trials_per_gpu,
        )
        client = session.docker()
        if info.gpus:
            prepare_gpu_locks(client, worker_image)
        wanted = {s.name for s in specs}
        for stale in services.cluster_containers(client, spec.cluster_name, role="worker"):
            if stale.name not in wanted:  # e.g. a GPU that is gone
                stale.remove(force=True)
        with images.docker_errors(
            str(session.host), f"starting workers from image {worker_image}", images.run_advice(worker_image)
        ):
            created = [services.apply(client, spec.cluster_name, container_spec)[1] for container_spec in specs]
        kind = (
            f"{len(info.gpus)} GPU worker(s)" + (f" x {spec.trials_per_gpu} trials" if spec.trials_per_gpu > 1 else "")
            if info.gpus
            else f"1 CPU worker x {spec.cpu_slots or info.cpus} slot(s)"
        )
        state = "started" if any(created) else "already running"
        report(f"{session.host}: {kind} as {info.hostname} {state}")
        for line in sharing_lines(info, spec.cpu_slots or info.cpus):
            report(f"{session.host}: {line}")
        return {s.node: str(session.host) for s in specs if s.node}

    nodes: dict[str, str] = {}
    for started in on_hosts("starting workers", _worker_hosts(spec, sessions), start):
        nodes.update(started)
    return nodes


def prepare_gpu_locks(client: Any, image: str) -> None:
    """The host's GPU lock directory, writable by every project's workers (their users may differ).

    Made by a short container of the worker image as root: the login user may not write ``/var/lib``.
    """
    client.containers.run(
        image,
        ["sh", "-c", "mkdir -p /locks && chmod 1777 /locks"],
        user="root",
        volumes={services.GPU_LOCK_DIR: {"bind": "/locks", "mode": "rw"}},
        network_mode="host",
        remove=True,
    )


def sharing_lines(info: HostFacts, slots: int) -> list[str]:
    """What a worker host shares with other projects' workers, one line per project (empty: nothing)."""
    lines = []
    for other in info.neighbours:
        if info.gpus and other.gpus:
            shared = [gpu for gpu in info.gpus if gpu in other.gpus]
            if shared:
                lines.append(
                    f"GPU {', '.join(shared)} shared with project {other.cluster!r}: one trial per GPU at a time, "
                    "trials wait their turn (docs/sharing.md)"
                )
        elif not info.gpus and other.cpu_slots:
            lines.append(
                f"{other.describe()} on these {info.cpus} CPU(s), next to this project's {slots}: "
                "split them with --cpu-slots (docs/sharing.md)"
            )
    return lines


def wait_for_workers(
    broker: BrokerSettings,
    nodes: dict[str, str],
    timeout: float,
    report: Report,
    sessions: dict[Host, HostSession] | None = None,
    cluster: str = "",
) -> None:
    """Wait until every worker node (name -> host) answers a ping; ServiceError naming the silent ones.

    With ``sessions``, the error shows the last log lines of each silent worker's container.
    """
    deadline = time.monotonic() + timeout
    while True:
        answered = worker_status(broker, timeout=2.0)
        missing = sorted(set(nodes) - set(answered))
        if not missing:
            report(f"{len(nodes)} worker node(s) answer")
            return
        if time.monotonic() >= deadline:
            silent = ", ".join(f"{node} on {nodes[node]}" for node in missing)
            tails = _worker_tails(sessions, cluster, missing) if sessions else ""
            raise ServiceError(
                f"worker(s) {silent} did not answer within {timeout:g}s"
                + (f"; last lines of their containers:{tails}" if tails else "; see `docker logs` of its container")
            )


def _worker_tails(sessions: dict[Host, HostSession], cluster: str, missing: list[str]) -> str:
    """The last log lines of the worker containers of the ``missing`` nodes, each under its name."""
    parts = []
    for session in sessions.values():
        try:
            containers = services.cluster_containers(session.docker(), cluster, role="worker")
        except Exception:  # the error being reported matters more than its details
            log.debug("cannot list the workers of %s", session.host, exc_info=True)
            continue
        for container in containers:
            if container.labels.get(services.LABEL_NODE) in missing:
                parts.append(f"\n  {session.host} {container.name} ({container.status}):\n")
                parts.append(diagnose.container_tail(container))
    return "".join(parts)


def write_clean_script(path: Path, spec: ClusterSpec, ssh: SSHOptions) -> None:
    """``infra_clean.sh``: removes the containers of this cluster on every host it used."""
    args = ["--cluster", spec.cluster_name, "--hosts", ",".join(str(h) for h in spec.hosts_in_use)]
    if ssh.key_filename:
        args += ["-i", ssh.key_filename]
    if ssh.known_hosts:
        args += ["--known-hosts", ssh.known_hosts]
    text = (
        "#!/bin/sh\n"
        f"# Generated by infrainit on {time.strftime('%Y-%m-%d %H:%M:%S')}: removes every container of cluster\n"
        f"# {spec.cluster_name!r} on {', '.join(str(h) for h in spec.hosts_in_use)}. Files on the hosts stay;\n"
        "# the broker's data volume too, unless --volumes (asks first, or --yes).\n"
        'cd "$(dirname "$0")" || exit 2\n'
        f'exec "${{{envvars.VENV}:-./.venv}}/bin/python" -m mlframework infra-clean '
        f'{" ".join(shlex.quote(a) for a in args)} "$@"\n'
    )
    path.write_text(text)
    path.chmod(0o755)


@dataclass
class InitResult:
    """What infrainit started."""

    spec: ClusterSpec
    broker_url_redacted: str
    flower_url: str | None
    workers: int
    seconds: float


def infrainit(
    spec: ClusterSpec,
    repo_root: Path,
    *,
    ssh: SSHOptions,
    secrets_path: Path | None = None,
    save_options: bool = True,
    report: Report = lambda line: None,
) -> InitResult:
    """Bring the cluster up (see the module docstring for the steps)."""
    started = time.monotonic()
    project_dir = find_project(spec, repo_root)
    secrets_file = secrets_path or repo_root / DEFAULT_SECRETS_PATH
    secrets = ClusterSecrets.load_or_create(secrets_file, spec.cluster_name)
    # Written first, so that whatever a failure below leaves behind can be removed.
    write_clean_script(repo_root / CLEAN_SCRIPT, spec, ssh)
    if save_options:
        save_config(repo_root / CONFIG_FILE, spec.to_config())
    with _open(spec, ssh) as sessions:
        report(f"preflight on {len(sessions)} host(s)")
        facts = preflight(spec, sessions, spec.cluster_name)
        changed = sync_files(spec, sessions, repo_root, project_dir)
        report(f"files in ~/{spec.remote_path} on every host ({changed} changed)")
        tag = provide_images(spec, sessions, repo_root, project_dir, report)
        if spec.master is not None:
            port = facts[spec.master].flower_port or services.FLOWER_PORT
            doing = f"starting RabbitMQ from image {spec.broker_image} (Flower from {tag})"
            with images.docker_errors(str(spec.master), doing, images.run_advice(spec.broker_image)):
                start_master(spec, sessions[spec.master], secrets, tag, report, repo_root, port)
            if port != spec.flower_port:  # chosen here: recorded, so that `secrets` and the next infrainit find it
                spec = replace(spec, flower_port=port)
                save_config(repo_root / CONFIG_FILE, spec.to_config())
        nodes = start_workers(spec, sessions, facts, secrets, tag, report)
        host, port = broker_endpoint(spec, from_here=True)
        settings = BrokerSettings(secrets.broker_url(host, port))
        wait_for_workers(settings, nodes, WORKER_START_TIMEOUT, report, sessions, spec.cluster_name)
    return InitResult(spec, settings.redacted_url(), flower_url(spec), len(nodes), time.monotonic() - started)


def clean(
    cluster: str,
    hosts: list[Host],
    ssh: SSHOptions,
    report: Report = lambda line: None,
    *,
    volumes: bool = False,
    secrets: ClusterSecrets | None = None,
) -> dict[str, list[str]]:
    """Remove every container of ``cluster`` on ``hosts``; leave other projects' containers and broker running.

    The shared broker on a host goes too when no other project's master runs there (its Flower). Without
    ``volumes`` this project's vhost and user stay in the broker's data (its queued trials too); with ``volumes``
    they are deleted, and the broker's data volume with the broker when it goes. ``secrets`` names the user and
    vhost (default: ``mlf-<cluster>``). Returns the names removed per host.
    """
    vhost = secrets.rabbitmq_vhost if secrets else f"mlf-{cluster}"
    user = secrets.rabbitmq_user if secrets else f"mlf-{cluster}"

    def remove(session: HostSession) -> list[str]:
        advice = "check that host's Docker (docker info), then run infra_clean.sh again"
        with session, images.docker_errors(str(session.host), f"removing the containers of {cluster}", advice):
            client = session.docker()
            names = services.remove_cluster(client, cluster)
            gone = services.remove_volume(client, f"{cluster}-broker-data") if volumes else []  # an older broker's
            kept = ""
            broker = services.running_broker(client)
            if broker is not None:
                if volumes:
                    broker_accounts.remove_account(broker, str(session.host), vhost, user)
                others = services.other_masters(client, cluster)
                if others:
                    kept = f"; {services.BROKER_NAME} stays: project(s) {', '.join(others)} use it"
                else:
                    broker.remove(force=True)
                    names.append(broker.name)
                    gone += services.remove_volume(client, services.BROKER_VOLUME) if volumes else []
        report(
            f"{session.host}: removed {len(names)} container(s)"
            + (f" and volume(s) {', '.join(gone)}" if gone else "")
            + kept
        )
        return names + gone

    removed = on_hosts("clean-up", [HostSession(h, ssh) for h in hosts], remove)
    return {str(host): names for host, names in zip(hosts, removed)}


def update_files(
    repo_root: Path, *, ssh: SSHOptions, secrets_path: Path | None = None, report: Report = lambda line: None
) -> int:
    """Re-sync code to the hosts; restart the workers where something changed. Returns files changed."""
    spec, _ = load_cluster(repo_root, secrets_path)
    project_dir = find_project(spec, repo_root)
    tag = images.image_tag(spec.cluster_name, repo_root, project_dir, spec.base_image)

    with _open(spec, ssh) as sessions:

        def update(session: HostSession) -> int:
            paths = ClusterPaths(session.remote_path(spec.remote_path))
            changed = session.sync_tree(repo_root / "mlframework", f"{paths.source}/mlframework")
            changed += session.sync_tree(project_dir, paths.project)
            changed += session.sync_tree(repo_root / "infra", f"{paths.root}/infra")
            if changed and session.host in spec.workers:
                client = session.docker()
                current = {
                    c.image.tags[0] if c.image.tags else ""
                    for c in services.cluster_containers(client, spec.cluster_name, role="worker")
                }
                if current and current != {tag}:
                    report(f"{session.host}: requirements changed; run infrainit -f to rebuild the worker image")
                with images.docker_errors(str(session.host), f"restarting the workers ({tag})", images.run_advice(tag)):
                    names = services.restart_workers(client, spec.cluster_name)
                restarted.update({node: str(session.host) for node in services.worker_nodes(client, spec.cluster_name)})
                report(f"{session.host}: {changed} file(s) changed, restarted {len(names)} worker(s)")
            else:
                report(f"{session.host}: {changed} file(s) changed")
            return changed

        restarted: dict[str, str] = {}
        changed = sum(on_hosts("update", list(sessions.values()), update))
    if restarted:
        wait_for_workers(cluster_broker(repo_root, secrets_path), restarted, WORKER_START_TIMEOUT, report)
    return int(changed)


__all__ = [
    "InitResult",
    "clean",
    "infrainit",
    "update_files",
]
