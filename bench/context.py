"""What every scenario shares: options, the private broker, our workers, the peers, one sweep.

One :class:`Context` lives for a whole bench run. It starts at most one private
RabbitMQ node (``testbed/rabbitmq.py``) and one set of our workers at a time,
and stops our workers before a peer runs, so that two systems never share the
machine's two cores.
"""

from __future__ import annotations

import cProfile
import csv
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.figures import Figure
from mlframework.statuses import SUCCESS

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PROJECT = BENCH_DIR / "projects" / "trivial"
PEERS_DIR = BENCH_DIR / "peers"
PEERS_VENV = BENCH_DIR / ".venv-peers"
SLOTS = 2  # every system gets two concurrent trials (the machine has two cores)


class Unavailable(Exception):
    """A system cannot run here (not installed, no broker); the row says why."""


@dataclass
class Options:
    quick: bool = False
    runs: int = 3
    only: list[str] = field(default_factory=list)  # "scenario" or "scenario.system" prefixes
    profile_dir: Path | None = None  # cProfile of each of our driver runs goes here


class Context:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.workdir = Path(tempfile.mkdtemp(prefix="mlf-bench-"))
        self._rabbitmq: Any = None
        self._rabbitmq_error: str | None = None
        self._workers: tuple[str, Any] | None = None  # (mode, LocalWorker | EmbeddedCluster)

    # -- selection ---------------------------------------------------------

    def wanted(self, key: str) -> bool:
        """Whether ``scenario.system`` was selected with --only (everything by default)."""
        if not self.options.only:
            return True
        return any(key == name or key.startswith(name + ".") for name in self.options.only)

    @property
    def runs(self) -> int:
        return self.options.runs

    # -- services ----------------------------------------------------------

    def rabbitmq_url(self) -> str:
        """The URL of the bench's private RabbitMQ node, started on first use."""
        if self._rabbitmq is None and self._rabbitmq_error is None:
            from testbed import rabbitmq as module

            if module.rabbitmq_bin_dir() is None:
                self._rabbitmq_error = "rabbitmq-server is not installed (scripts/test.sh installs it)"
            else:
                try:
                    self._rabbitmq = module.RabbitMQNode().start()
                except RuntimeError as exc:
                    self._rabbitmq_error = f"RabbitMQ did not start: {str(exc).splitlines()[0]}"
        if self._rabbitmq is None:
            raise Unavailable(self._rabbitmq_error)
        return self._rabbitmq.url

    def broker(self, mode: str) -> Any:
        """Our workers of ``mode`` ("rabbitmq" or "embedded"), started and warm; returns their BrokerSettings."""
        from mlframework.cluster.embedded.workers import EmbeddedCluster, LocalWorker
        from mlframework.sweep.wire.app import BrokerSettings

        if self._workers is not None and self._workers[0] == mode:
            return self._workers[1].broker
        self.stop_workers()
        if mode == "rabbitmq":
            settings = BrokerSettings(url=self.rabbitmq_url())
            workers: Any = LocalWorker(settings, PROJECT, SLOTS, self.workdir / "rabbitmq-worker.log")
        elif mode == "embedded":
            workers = EmbeddedCluster(PROJECT, workers=SLOTS, run_dir=self.workdir / "embedded")
        else:
            raise ValueError(mode)
        workers.start()
        self._workers = (mode, workers)
        # Warm up: the first trials wait for the worker to boot and its pool to fork.
        self.sweep(mode, "noop", {"i": range(2 * SLOTS)}, profile=False)
        return workers.broker

    def quiet_machine(self) -> None:
        """Stop our workers before something else is timed (kept running with --quick, to save time)."""
        if not self.options.quick:
            self.stop_workers()

    def stop_workers(self) -> None:
        if self._workers is not None:
            _, workers = self._workers
            self._workers = None
            workers.stop()

    def reset_workers(self) -> None:
        """After a failed sweep: stop our workers and drop the trials it left queued."""
        if self._workers is None:
            return
        mode, workers = self._workers
        self.stop_workers()
        if mode == "embedded":
            shutil.rmtree(workers.run_dir, ignore_errors=True)
        else:
            from mlframework.sweep.wire.app import create_app

            create_app(workers.broker).control.purge()

    def close(self) -> None:
        self.stop_workers()
        if self._rabbitmq is not None:
            self._rabbitmq.stop()
            self._rabbitmq = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- one sweep of ours -------------------------------------------------

    def sweep(
        self,
        mode: str,
        task: str,
        grid: Mapping[str, Any],
        *,
        profile: bool = True,
        check: Callable[[Path], None] | None = None,
        timeout: float | None = None,
    ) -> float:
        """Run one sweep of ``task`` over ``grid`` on our ``mode`` workers; its wall time in seconds.

        The clock covers run_sweep end to end (connect, expand, dispatch, every
        record written and results.csv complete). Afterwards every trial must be
        SUCCESS in trials.jsonl and results.csv, else this raises; so does a
        sweep still running after ``timeout`` seconds (a lost trial).
        """
        from mlframework.sweep.driver.run import run_sweep
        from mlframework.sweep.driver.spec import SweepSpec
        from mlframework.sweep.params.grid_file import grid_from_mapping

        broker = self.broker(mode)
        assert self._workers is not None
        workers = self._workers[1]
        results = self.workdir / "results"
        spec = SweepSpec(PROJECT, grid_from_mapping(dict(grid)), task=task, results_root=results)
        profiler = cProfile.Profile() if profile and self.options.profile_dir else None
        timeout = timeout or (60.0 if self.options.quick else 300.0)
        deadline = time.monotonic() + timeout

        def health_check() -> None:
            workers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{task} sweep of {spec.grid.count} trials still running after {timeout:.0f} s")

        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            outcome = run_sweep(spec, broker, health_check=health_check)
        finally:
            if profiler is not None:
                profiler.disable()
        wall = time.perf_counter() - started
        try:
            _check_recorded(outcome.directory, outcome.total)
            if check is not None:
                check(outcome.directory)
            if profiler is not None:
                assert self.options.profile_dir is not None
                self.options.profile_dir.mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(self.options.profile_dir / f"{mode}-{task}-{outcome.total}-{time.time():.0f}.prof")
        finally:
            shutil.rmtree(outcome.directory, ignore_errors=True)
        return wall

    # -- peers -------------------------------------------------------------

    def peers_python(self) -> str:
        """The peers venv's python (bench/run.sh creates it)."""
        python = PEERS_VENV / "bin" / "python"
        if not (PEERS_VENV / ".installed").exists() or not python.exists():
            reason = (PEERS_VENV / ".failed").read_text().strip() if (PEERS_VENV / ".failed").exists() else ""
            raise Unavailable(f"peers venv missing ({reason or 'run bench/run.sh, which installs it'})")
        return str(python)

    def peer(
        self, python: str, script: str, args: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run ``bench/peers/SCRIPT ARGS`` with ``python``; its last stdout line is a JSON object."""
        self.quiet_machine()
        argv = [python, str(PEERS_DIR / script), *args]
        try:
            done = subprocess.run(
                argv,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **(env or {})},
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{script} took more than {timeout:.0f} s") from None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
            raise RuntimeError(
                f"{script} exited with {done.returncode}: {tail[-1] if tail else ''}\n" + "\n".join(tail)
            )
        return json.loads(lines[-1])


def _check_recorded(directory: Path, total: int) -> None:
    """Every trial SUCCESS in trials.jsonl and in results.csv, or raise."""
    with open(directory / "trials.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    with open(directory / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    bad = [r["trial"] for r in records if r.get("status") != SUCCESS]
    if len(records) != total or len(rows) != total or bad:
        raise RuntimeError(
            f"sweep {directory.name}: {len(records)} records, {len(rows)} csv rows for {total} trials; "
            f"failed: {bad[:5]}"
        )


def measure(
    figure: Figure, ctx: Context, one_run: Callable[[], float], retries: int | None = None, runs: int | None = None
) -> Figure:
    """Fill ``figure.values`` with ``ctx.runs`` runs of ``one_run`` (up to ``runs`` values: interleave two figures).

    A run that raises is noted on the row, our workers are reset and the run
    is tried again, at most ``retries`` times in all (default: twice the
    runs); past that (or when the system is unavailable) the row keeps the
    reason instead of figures.
    """
    retries = 2 * ctx.runs if retries is None else retries
    failures: list[str] = []
    while len(figure.values) < (ctx.runs if runs is None else runs) and figure.unavailable is None:
        try:
            figure.values.append(one_run())
        except Unavailable as exc:
            figure.values.clear()
            figure.unavailable = f"not available: {exc}"
            return figure
        except Exception as exc:  # a broken run is a note or a row saying so, not a lost bench
            log.exception("%s: a run failed", figure.key)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
            failures.append(reason)
            ctx.reset_workers()
            if len(failures) > retries:
                figure.values.clear()
                figure.unavailable = f"failed {len(failures)} times: {reason}"
                return figure
    if failures:
        figure.note += (
            ("; " if figure.note else "")
            + f"{len(failures)} run(s) failed and were redone: "
            + "; ".join(sorted(set(failures)))
        )
    return figure


def from_peer(figure: Figure, ctx: Context, run_peer: Callable[[], list[float]]) -> Figure:
    """Like :func:`measure` for a peer that does all its runs in one process."""
    try:
        figure.values = list(run_peer())
    except Unavailable as exc:
        figure.unavailable = f"not available: {exc}"
    except Exception as exc:
        log.exception("%s failed", figure.key)
        figure.values = []
        first = str(exc).splitlines()
        figure.unavailable = f"failed: {type(exc).__name__}: {first[0] if first else ''}"
        log.error("%s", exc)
    return figure
