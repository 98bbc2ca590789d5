"""Embedded mode: a sweep on this machine with no server to install.

The broker is kombu's filesystem transport (messages are files in a directory
under the run directory; written atomically, see :mod:`mlframework.sweep.wire.fs_transport`)
and the workers are one local ``celery worker`` process with ``N`` pool processes,
or one per GPU, started and stopped here. Same tasks, same events, same results as a
cluster; what it cannot give is redelivery of a trial whose worker was killed mid-run
(the filesystem transport removes a message when it is read), so use a cluster for sweeps that must survive that.

Nothing outlives the cluster: every process of it (workers, pool processes,
trials and what they start) carries the cluster's tag in its environment and
is stopped by :meth:`EmbeddedCluster.stop`, or, when the driver dies without
stopping it (SIGKILL, a crash), by the watchdog of :mod:`mlframework.cluster.embedded.watchdog`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlframework import envvars
from mlframework.cluster.worker_command import worker_command
from mlframework.exceptions import ServiceError
from mlframework.sweep.trials import runner
from mlframework.sweep.wire import fs_transport
from mlframework.sweep.wire.app import BrokerSettings
from mlframework.system import proctree
from mlframework.system.parent_death import own_session

log = logging.getLogger(__name__)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# An embedded worker whose driver died is stopped, not killed: its pool processes stay alive, and with them
# the subreapers that hold its trials' escaped children (even one that cleared its environment), until the
# watchdog has found and stopped all of them (cluster/embedded/watchdog.py).
HELD_FOR_THE_WATCHDOG = signal.SIGSTOP


class LocalWorker:
    """One ``celery worker`` process on this machine with ``concurrency`` pool processes."""

    def __init__(
        self,
        broker: BrokerSettings,
        project_dir: str | os.PathLike[str],
        concurrency: int,
        log_path: str | os.PathLike[str],
        node_name: str = "local@%h",
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        parent_death_signal: int = signal.SIGKILL,
    ) -> None:
        """``parent_death_signal``: what the worker gets when this process dies (see :func:`own_session`)."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.broker = broker
        self.project_dir = Path(project_dir).resolve()
        self.concurrency = concurrency
        self.log_path = Path(log_path)
        self.node_name = node_name
        self.extra_env = dict(extra_env or {})
        self.extra_args = list(extra_args or [])
        self.parent_death_signal = parent_death_signal
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the worker; it begins consuming trials at once."""
        env = dict(os.environ)
        env.update(self.broker.to_env())
        env[envvars.PROJECT] = str(self.project_dir)
        env[envvars.SLOTS] = str(self.concurrency)
        env.update(self.extra_env)
        argv = worker_command(
            self.node_name, self.concurrency, python=sys.executable, extra=["--without-mingle", *self.extra_args]
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                argv,
                cwd=self.project_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=own_session(self.parent_death_signal),
            )
        log.info("started a local worker with %d process(es), log in %s", self.concurrency, self.log_path)

    def check(self) -> None:
        """Raise :class:`ServiceError` when the worker has died."""
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            self._process = None
            raise ServiceError(
                f"the local Celery worker exited with status {code}; last lines of {self.log_path}:\n"
                + _tail(self.log_path)
            )

    def stop(self, timeout: float = 0.3) -> None:
        """Cold shutdown (SIGQUIT: no trial starts, the pool is ended), SIGKILL of the group after ``timeout``.

        No warm shutdown: in embedded mode the broker goes with the driver, so
        what a running trial would still report has nowhere to go. Trials the
        worker left are stopped by :meth:`EmbeddedCluster.stop`. The short
        ``timeout``: the worker closes its consumer within milliseconds of
        SIGQUIT, then waits 3-5 s here for billiard's pool processes to end,
        which hold nothing worth waiting for (measured; it made every sweep
        wait that long after its summary).
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGQUIT)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.info("the local worker did not stop within %.1fs of SIGQUIT: SIGKILL", timeout)
        # The pool's processes share the worker's process group: none outlives the worker.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once, as the OOM killer or a power cut would."""
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> LocalWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmbeddedCluster:
    """A filesystem broker plus a local Celery worker for one project; a context manager."""

    def __init__(
        self,
        project_dir: str | os.PathLike[str],
        workers: int | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        # How often an idle worker looks for a message file. A freed slot waits up to this long for its next
        # trial: 0.05 s gave 45 trivial trials/s on 2 workers, 0.01 s gives 162/s for 1.8% of a core when idle.
        polling_interval: float = 0.01,
        gpus: Sequence[str] = (),
    ) -> None:
        """``workers`` pool processes in one CPU worker, or with ``gpus`` one worker per GPU.

        A GPU worker runs one trial at a time (``workers`` at a time, if given)
        and its trials see only that GPU, as CUDA device 0, as in a cluster's
        per-GPU worker containers.
        """
        self.project_dir = Path(project_dir).resolve()
        self.gpus = list(gpus)
        self.workers = workers or (1 if self.gpus else os.cpu_count() or 1)
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="mlframework-local-"))
        self.polling_interval = polling_interval
        self.tag = proctree.new_tag()  # in the environment of every process of this cluster
        self._watchdog: subprocess.Popen[bytes] | None = None
        # Whatever the workers and their trials put in TMPDIR (billiard's pymp-*, metrics scratch files,
        # a script's temporary files) lives in the run directory, removed with it even after a SIGKILL.
        tagged = {envvars.CLUSTER: self.tag, "TMPDIR": str(self.run_dir / "tmp")}
        # Worker heartbeats are events for Flower, which embedded mode does not run.
        if not self.gpus:
            self.local_workers = [
                LocalWorker(
                    self.broker,
                    self.project_dir,
                    self.workers,
                    self.run_dir / "worker.log",
                    extra_env=tagged,
                    extra_args=["--without-heartbeat"],
                    parent_death_signal=HELD_FOR_THE_WATCHDOG,
                )
            ]
        else:
            self.local_workers = [
                LocalWorker(
                    self.broker,
                    self.project_dir,
                    self.workers,
                    self.run_dir / f"worker-gpu{gpu}.log",
                    node_name=f"gpu{gpu}@%h",
                    # SLOTS: the trials of all GPUs share this machine's CPUs (OMP_NUM_THREADS, trial_env.py).
                    extra_env={
                        "CUDA_VISIBLE_DEVICES": gpu,
                        envvars.GPU: gpu,
                        envvars.SLOTS: str(self.workers * len(self.gpus)),
                        **tagged,
                    },
                    extra_args=["--without-heartbeat"],
                    parent_death_signal=HELD_FOR_THE_WATCHDOG,
                )
                for gpu in self.gpus
            ]

    @property
    def broker(self) -> BrokerSettings:
        """Settings for the driver and the workers alike."""
        queue_dir = self.run_dir / "broker" / "queue"
        return BrokerSettings(
            url=f"{fs_transport.SCHEME}://localhost/",
            transport_options={
                "data_folder_in": str(queue_dir),
                "data_folder_out": str(queue_dir),
                "control_folder": str(self.run_dir / "broker" / "control"),
                "store_processed": False,
                "polling_interval": self.polling_interval,
            },
            # Task events feed Flower, which embedded mode does not run.
            celery_config={"worker_send_task_events": False},
        )

    def start(self) -> None:
        """Create the broker folders, start the watchdog, then the workers."""
        for folder in ("broker/queue", "broker/control", "tmp"):
            (self.run_dir / folder).mkdir(parents=True, exist_ok=True)
        self._start_watchdog()
        for worker in self.local_workers:
            worker.start()
            self._tell_watchdog(f"worker {worker.pid}")

    def _start_watchdog(self) -> None:
        self._watchdog = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlframework.cluster.embedded.watchdog",
                self.tag,
                str(self.run_dir) if self._own_run_dir else "",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # out of reach of the terminal's SIGHUP and Ctrl-C
        )

    def _tell_watchdog(self, line: str) -> None:
        if self._watchdog is None or self._watchdog.stdin is None:
            return
        try:
            self._watchdog.stdin.write(line.encode() + b"\n")
            self._watchdog.stdin.flush()
        except OSError:  # it died: the clean-up is the driver's alone
            log.warning("the embedded cluster's watchdog is gone")

    def note_sweep(self, sweep_json: str | os.PathLike[str]) -> None:
        """The sweep.json to mark interrupted should the driver die without stopping the cluster."""
        self._tell_watchdog(f"sweep {Path(sweep_json).resolve()}")

    def check(self) -> None:
        """Raise :class:`ServiceError` when a worker has died."""
        for worker in self.local_workers:
            worker.check()

    def stop(self, grace: float = 1.0) -> None:
        """Stop the workers, then every process left of the cluster (SIGTERM, SIGKILL after ``grace``).

        Then the watchdog is told it is done, and the run directory is removed if it was made here.
        """
        # Workers and trials are held still (SIGSTOP) first, so that no trial starts or escapes while they go;
        # the held workers are then killed (a cold shutdown would not reach them, and has nothing to save here).
        held = proctree.freeze(envvars.CLUSTER, self.tag, whole=True)
        for worker in self.local_workers:
            worker.kill()
        left = proctree.kill_tagged(envvars.CLUSTER, self.tag, grace, also=held.untagged)
        if left:
            log.info("stopped %d process(es) the local workers left behind", left)
        runner.remove_stale_scratch()  # the metrics scratch directories of the killed pool processes
        if self._watchdog is not None:
            self._tell_watchdog("done")
            with contextlib.suppress(OSError):
                assert self._watchdog.stdin is not None
                self._watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=2)
            self._watchdog = None
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
