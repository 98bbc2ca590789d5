"""Cluster subcommands of ``mlframework``: infrainit, update-files, status, run-task, secrets,
infra-clean, and follow / fetch for detached sweeps.

Each one parses options, calls one function of :mod:`mlframework.cluster.bootstrap`
(or :mod:`~mlframework.cluster.recorded`, :mod:`~mlframework.cluster.detached`) and
prints what it reports; the scripts in ``scripts/`` run these commands.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from mlframework.cli.common import (
    RESULTS_HELP_RECEIVES,
    broker_option,
    cluster_ssh_options,
    known_hosts_option,
    make_ssh_options,
    repo_root,
    resolve_sweep,
    results_option,
    ssh_options,
)
from mlframework.exceptions import ConfigError


def _echo(line: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {line}")


@click.command("infrainit")
@click.option("-a", "hosts", help="Hosts, comma-separated: [user@]host[:port],... (numbered from 1).")
@click.option("-f", "from_config", is_flag=True, help="Read the options from config.sh (options given override it).")
@click.option("-i", "ssh_key", help="SSH private key  [default: the SSH agent and ~/.ssh/id_*]")
@click.option("-r", "remote_path", help="Directory on the hosts, relative to the home directory.")
@click.option("-d", "project", help="Project: a name under projects/ or a path.")
@click.option("-m", "master", help="Where RabbitMQ, the master and Flower run: local or a host number.")
@click.option("-w", "workers", help="Where workers run: local and/or host numbers, comma-separated.")
@click.option("-b", "broker", help="host[:port] of a running broker, when no master is started (-m).")
@click.option(
    "--base-image",
    help="Base image of the worker image: name[:tag], registry[:port]/name:tag or name@sha256:...  "
    "[default: python:3.11-slim]",
)
@click.option(
    "--broker-image", help="RabbitMQ image, named as --base-image (no tag: :latest)  [default: rabbitmq:3-management]"
)
@click.option(
    "--image-source", type=click.Choice(["build", "ship"]), help="build on each host, or build here and ship."
)
@click.option("--cpu-slots", help="Worker processes on hosts without GPUs  [default: one per CPU]")
@click.option("--trials-per-gpu", help="Trials run at once on one GPU, each with 1/N of its memory  [default: 1]")
@click.option("--flower-port", help="Flower's port on the master  [default: 5555, or the next free one]")
@click.option("--accept-new-host-keys", is_flag=True, default=None, help="Trust (and record) unknown host keys.")
@click.option("--cluster-name", help="Name in container names and labels  [default: from the project]")
@ssh_options
def infrainit_command(
    hosts: str | None,
    from_config: bool,
    ssh_key: str | None,
    remote_path: str | None,
    project: str | None,
    master: str | None,
    workers: str | None,
    broker: str | None,
    base_image: str | None,
    broker_image: str | None,
    image_source: str | None,
    cpu_slots: str | None,
    trials_per_gpu: str | None,
    flower_port: str | None,
    accept_new_host_keys: bool | None,
    cluster_name: str | None,
    known_hosts: str | None,
    connect_timeout: float,
) -> None:
    """Start RabbitMQ, Flower and the Celery workers on the hosts (the seed's infrainit.sh).

    Without -f the options are saved to config.sh; generated credentials go to
    .mlframework/secrets.env (mode 0600; `mlframework secrets` shows them);
    ./infra_clean.sh removes what was started.
    """
    from mlframework.cluster.bootstrap import infrainit
    from mlframework.cluster.config_file import load_config
    from mlframework.cluster.spec import CONFIG_FILE, ClusterSpec

    root = repo_root()
    if project and ("/" in project or project.startswith(".")):
        project = os.path.abspath(os.path.expanduser(project))  # config.sh must not depend on the cwd
    given = {
        "hosts": hosts,
        "ssh_key": ssh_key,
        "remote_path": remote_path,
        "project": project,
        "master": master,
        "workers": workers,
        "broker": broker,
        "base_image": base_image,
        "broker_image": broker_image,
        "image_source": image_source,
        "cpu_slots": cpu_slots,
        "trials_per_gpu": trials_per_gpu,
        "flower_port": flower_port,
        "accept_new_host_keys": accept_new_host_keys,
        "cluster_name": cluster_name,
    }
    if from_config:
        config_path = root / CONFIG_FILE
        if not config_path.exists():
            raise ConfigError(f"-f: {config_path} not found; run infrainit once with options")
        spec = ClusterSpec.from_config(load_config(config_path), str(config_path), overrides=given)
    else:
        spec = ClusterSpec.from_options(**given)  # type: ignore[arg-type]  # click gave each option its type
    ssh = make_ssh_options(spec.ssh_key, known_hosts, spec.accept_new_host_keys, connect_timeout)
    result = infrainit(spec, root, ssh=ssh, save_options=not from_config, report=_echo)
    _echo(f"cluster {spec.cluster_name!r} is up in {result.seconds:.1f}s: {result.workers} worker container(s)")
    _echo(f"broker: {result.broker_url_redacted}")
    if result.flower_url:
        _echo(f"Flower: {result.flower_url} (user and password: mlframework secrets)")
    _echo("check with scripts/check_celery_status.sh; remove with ./infra_clean.sh")


@click.command("infra-clean")
@click.option("--cluster", "cluster_name", required=True, help="Cluster name (container label).")
@click.option("--hosts", required=True, help="Hosts to clean: [user@]host[:port] or local, comma-separated.")
@click.option("-i", "ssh_key", help="SSH private key.")
@click.option(
    "--volumes", is_flag=True, help="Also remove the project's vhost and user (its queues), and the broker's data."
)
@click.option("--yes", is_flag=True, help="Do not ask before removing the broker's data (--volumes).")
@ssh_options
def infra_clean_command(
    cluster_name: str,
    hosts: str,
    ssh_key: str | None,
    volumes: bool,
    yes: bool,
    known_hosts: str | None,
    connect_timeout: float,
) -> None:
    """Remove every container of the cluster on the hosts (files on the hosts stay; the broker's data too,
    unless --volumes). Other projects' containers stay, and the shared broker while a project uses it."""
    from mlframework.cluster.bootstrap import clean
    from mlframework.cluster.config_file import load_config
    from mlframework.cluster.hosts import Host, parse_host_list
    from mlframework.cluster.secrets import DEFAULT_SECRETS_PATH, ClusterSecrets
    from mlframework.cluster.spec import CONFIG_FILE

    entries = [h.strip() for h in hosts.split(",") if h.strip()]
    remote = [e for e in entries if e != "local"]
    parsed = list(parse_host_list(",".join(remote), "--hosts")) if remote else []
    if "local" in entries:
        parsed.insert(0, Host.local())
    if volumes and not yes:
        lost = (
            f"--volumes removes cluster {cluster_name}'s broker data on {hosts} (its vhost and user; the broker data "
            "volume too if no other project uses the broker): every queued trial, the events of detached sweeps "
            "still running"
        )
        if not sys.stdin.isatty():
            raise ConfigError(f"{lost}; add --yes to confirm (stdin is not a terminal to ask)")
        click.confirm(f"{lost}. Remove it?", abort=True)
    ssh = make_ssh_options(ssh_key, known_hosts, False, connect_timeout)
    # The user and vhost to remove: this checkout's, if it is this cluster's; else mlf-<cluster>.
    root = repo_root()
    recorded = load_config(root / CONFIG_FILE).get("CLUSTER_NAME") if (root / CONFIG_FILE).exists() else None
    secrets_file = root / DEFAULT_SECRETS_PATH
    secrets = ClusterSecrets.load(secrets_file) if recorded == cluster_name and secrets_file.exists() else None
    removed = clean(cluster_name, parsed, ssh, report=_echo, volumes=volumes, secrets=secrets)
    _echo(f"removed {sum(len(v) for v in removed.values())} container(s) of cluster {cluster_name!r}")


@click.command("update-files")
@ssh_options
def update_files_command(known_hosts: str | None, connect_timeout: float) -> None:
    """Re-sync framework and project files to the hosts (only what changed); restart workers that changed."""
    from mlframework.cluster.bootstrap import update_files
    from mlframework.cluster.recorded import load_cluster

    root = repo_root()
    spec, _ = load_cluster(root)
    ssh = make_ssh_options(spec.ssh_key, known_hosts, spec.accept_new_host_keys, connect_timeout)
    changed = update_files(root, ssh=ssh, report=_echo)
    _echo(f"{changed} file(s) changed in all")


@click.command("status")
@broker_option("Broker URL  [default: the cluster's]")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the nodes, the live sweeps and the hosts' GPUs as JSON.")
@known_hosts_option
def status_command(broker_url: str | None, timeout: float, as_json: bool, known_hosts: str | None) -> None:
    """One line per live worker node (as `celery status`), then the live sweeps, then per host and GPU what runs
    there now (every project's trials); exit 1 when no node answers."""
    from mlframework.cluster.recorded import cluster_broker, live_sweeps, worker_status
    from mlframework.sweep.wire.app import BrokerSettings

    broker = BrokerSettings(broker_url) if broker_url else cluster_broker(repo_root())
    nodes = worker_status(broker, timeout)
    sweeps = live_sweeps(broker, timeout)
    hosts = _gpu_use(known_hosts) if broker_url is None else []  # a broker given alone: no recorded hosts
    if as_json:
        document = {"nodes": nodes, "sweeps": sweeps, "hosts": [h.as_dict() for h in hosts]}
        click.echo(json.dumps(document, indent=2))
        sys.exit(0 if nodes else 1)
    for node in nodes:
        click.echo(f"->  {node}: OK")
    click.echo(f"\n{len(nodes)} node(s) online.")
    if sweeps:
        from mlframework.cli.console import print_live_sweeps

        print_live_sweeps(sweeps)
    lines = [_gpu_line(host.hostname or host.host, gpu) for host in hosts for gpu in host.gpus]
    lines += [f"  {host.host}: GPUs not read ({host.error})" for host in hosts if host.error and lines]
    if lines:
        click.echo("\nGPUs now (every project on these hosts):")
        click.echo("\n".join(lines))
    sys.exit(0 if nodes else 1)


def _gpu_use(known_hosts: str | None) -> list[Any]:
    """Every worker host's GPUs now (cluster/lab.py), as config.sh records the hosts; empty without it."""
    from mlframework.cluster.config_file import load_config
    from mlframework.cluster.lab import gpu_use
    from mlframework.cluster.spec import CONFIG_FILE, ClusterSpec

    config = repo_root() / CONFIG_FILE
    if not config.exists():
        return []
    spec = ClusterSpec.from_config(load_config(config), str(config))
    return gpu_use(list(spec.workers), cluster_ssh_options(spec, known_hosts, connect_timeout=5.0))


def _gpu_line(host: str, gpu: Any) -> str:
    use = " ".join(
        part
        for part in (
            f"{gpu.utilization_pct:g}%" if gpu.utilization_pct is not None else "",
            f"{gpu.memory_mb:g} MiB" if gpu.memory_mb is not None else "",
        )
        if part
    )
    who = f"project {gpu.project}, sweep {gpu.sweep}, trial {gpu.trial} since {gpu.since}" if gpu.trial else "free"
    queued = f", {gpu.waiting} trial(s) waiting" if gpu.waiting else ""
    return f"  {host} GPU {gpu.gpu}: {who}{queued}" + (f" ({use})" if use else "")


@click.command("secrets")
def secrets_command() -> None:
    """Print the cluster's credentials: RabbitMQ user, password, vhost, broker URL, Flower login.

    They are read from .mlframework/secrets.env, which infrainit creates; nothing
    else ever prints the passwords.
    """
    from mlframework.cluster.recorded import cluster_access

    access = cluster_access(repo_root())
    secrets = access.secrets
    rows = [
        ("RabbitMQ user", secrets.rabbitmq_user),
        ("RabbitMQ password", secrets.rabbitmq_password),
        ("RabbitMQ vhost", secrets.rabbitmq_vhost),
        ("broker URL", access.broker_url),
        ("Flower", access.flower_url or "not started (no master: -b)"),
        ("Flower user", secrets.flower_user),
        ("Flower password", secrets.flower_password),
    ]
    click.echo(f"cluster {access.cluster_name!r}, from {access.secrets_file} (keep them private):")
    for label, value in rows:
        click.echo(f"  {label + ':':<19}{value}")


@click.command("run-task", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_task_command(name: str, args: tuple[str, ...]) -> None:
    """Run the project's module NAME (test_echo, run_training, ...) against the cluster.

    ARGS go to the module (for the sample modules: options of `mlframework sweep`).
    """
    from mlframework.cluster.config_file import find_project
    from mlframework.cluster.recorded import cluster_broker, load_cluster

    root = repo_root()
    spec, _ = load_cluster(root)
    project_dir = find_project(spec, root)
    script = project_dir / f"{name}.py"
    if not script.is_file():
        known = ", ".join(sorted(p.stem for p in project_dir.glob("*.py") if p.stem not in ("tasks",)))
        raise ConfigError(f"{project_dir}: no module {name}.py (modules: {known})")
    env = dict(os.environ)
    env.update(cluster_broker(root).to_env())
    sys.stdout.flush()
    os.chdir(root)
    os.execve(sys.executable, [sys.executable, str(script), *args], env)


@click.command("follow")
@click.argument("sweep_id")
@known_hosts_option
def follow_command(sweep_id: str, known_hosts: str | None) -> None:
    """Print the output of a detached sweep until it ends; exit with its status."""
    from mlframework.cluster.detached import follow
    from mlframework.cluster.recorded import load_cluster

    root = repo_root()
    spec, _ = load_cluster(root)
    sweep_id = resolve_sweep(Path("results"), sweep_id, missing_ok=True)  # a prefix of one fetched already
    sys.exit(follow(root, cluster_ssh_options(spec, known_hosts), sweep_id, click.echo))


@click.command("fetch")
@click.argument("sweep_id")
@results_option(RESULTS_HELP_RECEIVES)
@known_hosts_option
def fetch_command(sweep_id: str, results_root: Path, known_hosts: str | None) -> None:
    """Copy a detached sweep's results (so far) from the master into RESULTS/<sweep-id>/."""
    from mlframework.cluster.detached import fetch
    from mlframework.cluster.recorded import load_cluster

    root = repo_root()
    spec, _ = load_cluster(root)
    sweep_id = resolve_sweep(results_root, sweep_id, missing_ok=True)  # a prefix of one fetched before
    target = fetch(root, cluster_ssh_options(spec, known_hosts), sweep_id, results_root)
    click.echo(f"results of sweep {sweep_id} in {target}")


COMMANDS = [
    infrainit_command,
    infra_clean_command,
    update_files_command,
    status_command,
    run_task_command,
    secrets_command,
    follow_command,
    fetch_command,
]
