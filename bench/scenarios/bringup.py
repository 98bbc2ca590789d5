"""4. Cluster bring-up: infrainit on 1, 2 and 3 test hosts, and update_files with nothing changed.

Runs the user's scripts (``scripts/infrainit.sh``, ``./infra_clean.sh``,
``scripts/update_files.sh``) against real test hosts made by
``testbed/testhosts.py`` (network namespaces with their own sshd and dockerd;
needs root). "Images present": the worker image was shipped once before the
timed runs, so a run is preflight, file sync, RabbitMQ, Flower and the
workers up and answering. "Shipping": the worker image is first removed from
every host, so the run also builds it here (cached layers) and ships it with
``docker save | docker load``. Each timed infrainit is followed by an untimed
``infra_clean.sh``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.context import Context, measure
from bench.figures import Figure, Target

PREFIX = "mlfb"  # not the tests' "mlft": a bench and a test run may not share hosts
SUBNET = "10.231.9.0/24"
CLUSTER = "bench-bringup"


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (test hosts: network namespaces, users, dockerd)"
    if shutil.which("apt-get") is None:
        return "needs Debian's apt-get to install docker.io, openssh-server, debootstrap"
    return None


def cannot_run(figures: list[Figure]) -> bool:
    """Whether test hosts cannot be made here; if so, each of ``figures`` says why."""
    reason = why_not()
    for figure in figures if reason else []:
        figure.unavailable = f"not run: {reason}"
    return reason is not None


class Hosts:
    """``count`` test hosts (3) and a build daemon, with a copy of the repository to run the scripts in."""

    def __init__(self, count: int = 3) -> None:
        from testbed import scripted, testhosts

        self.testhosts, self.scripted = testhosts, scripted
        testhosts.ensure_packages()
        testhosts.cleanup_stale(PREFIX)
        self.cluster = testhosts.TestHostCluster(count, subnet=SUBNET, prefix=PREFIX)
        self._build = None
        try:
            self.cluster.start()
            self.cluster.load_images(rabbitmq=True)
            self._build = testhosts.build_daemon(PREFIX)
            daemon = self._build.__enter__()
            testhosts.ensure_base_image(daemon.client(), testhosts.BASE_IMAGE)
            self.env = scripted.script_env(self.cluster, daemon.url)
            self.workdir = Path(tempfile.mkdtemp(prefix="mlf-bench-bringup-"))
            self.repo = scripted.copy_repo(self.workdir / "repo")
        except BaseException:
            self.close()
            raise

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        done = self.scripted.run(self.repo, *argv, env=self.env, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:1])} exited {done.returncode}: {(done.stderr or done.stdout)[-300:]}")
        return done

    def infrainit(self, hosts: int) -> float:
        destinations = ",".join(self.cluster.host(i).destination for i in range(1, hosts + 1))
        started = time.monotonic()
        self.run(
            "scripts/infrainit.sh",
            "-a",
            destinations,
            "-i",
            str(self.cluster.client_key),
            "-r",
            "mlf-bench",
            "-d",
            "sklearn_digits",
            "-m",
            "1",
            "-w",
            ",".join(str(i) for i in range(1, hosts + 1)),
            "--base-image",
            self.testhosts.BASE_IMAGE,
            "--broker-image",
            self.cluster.rabbitmq_image,
            "--image-source",
            "ship",
            "--cpu-slots",
            "1",
            "--cluster-name",
            CLUSTER,
        )
        return time.monotonic() - started

    def clean(self) -> None:
        self.run("./infra_clean.sh", timeout=300)

    def remove_worker_images(self) -> None:
        for i in range(1, self.cluster.count + 1):
            client = self.cluster.docker(i)
            for image in client.images.list(name=f"mlframework-worker-{CLUSTER}"):
                client.images.remove(image.id, force=True)

    def close(self) -> None:
        if self._build is not None:
            self._build.__exit__(None, None, None)
        self.cluster.stop()
        if hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    figures = [
        Figure("bringup", f"infrainit-{n}", f"ours: infrainit on {n} test host(s), images present", "s")
        for n in (1, 2, 3)
    ] + [
        Figure("bringup", "infrainit-3-ship", "ours: infrainit on 3 test hosts, worker image built and shipped", "s"),
        Figure("bringup", "update-files", "ours: update_files on 3 hosts, nothing changed", "s"),
    ]
    figures = [figure for figure in figures if ctx.wanted(figure.key)]
    targets = [
        Target("bringup.infrainit-3", "bringup.infrainit-1", "<=", 1.3, "<= 1.3x one host"),
        Target("bringup.update-files", None, "<=", 3.0, "< 3 s"),
    ]
    if not figures or cannot_run(figures):
        return figures, targets
    ctx.stop_workers()  # nothing of ours competes for the two cores meanwhile
    hosts: Any = None
    try:
        hosts = Hosts()
        hosts.infrainit(3)  # ships the worker image everywhere once
        hosts.clean()
        by_key = {figure.key: figure for figure in figures}

        def timed_init(n: int) -> float:
            try:
                return hosts.infrainit(n)
            finally:
                hosts.clean()

        for n in (1, 2, 3):
            figure = by_key.get(f"bringup.infrainit-{n}")
            if figure is not None:
                measure(figure, ctx, lambda n=n: timed_init(n))
        if "bringup.update-files" in by_key:
            hosts.infrainit(3)

            def update() -> float:
                started = time.monotonic()
                done = hosts.run("scripts/update_files.sh")
                if "0 file(s) changed in all" not in done.stdout:
                    raise RuntimeError(f"update_files changed files: {done.stdout[-200:]}")
                return time.monotonic() - started

            measure(by_key["bringup.update-files"], ctx, update)
            hosts.clean()
        if "bringup.infrainit-3-ship" in by_key:

            def shipped() -> float:
                hosts.remove_worker_images()
                return timed_init(3)

            measure(by_key["bringup.infrainit-3-ship"], ctx, shipped)
    except Exception as exc:  # no test hosts here: the rows say why
        for figure in figures:
            if not figure.values:
                figure.unavailable = f"not run: test hosts failed: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        if hosts is not None:
            hosts.close()
    return figures, targets
