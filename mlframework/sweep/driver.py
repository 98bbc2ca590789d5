"""The sweep driver: expand a grid, send one task per combination, record every trial.

Trials are sent lazily, at most ``window`` ahead of the ones finished, so a
grid of millions of combinations starts at once and never sits in memory or
floods the broker. Workers report through the sweep's event queue (see
:mod:`mlframework.sweep.events`); each event is written to the results store
before it is acknowledged.

Library use (a notebook does the same as the CLI)::

    from mlframework.sweep.driver import SweepSpec, run_sweep
    outcome = run_sweep(SweepSpec(project_dir, load_grid("parameters.yml")), broker)
"""

from __future__ import annotations

import datetime as _dt
import logging
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu.exceptions import OperationalError

from mlframework import __version__
from mlframework.exceptions import ConfigError, SweepError
from mlframework.sweep.app import TRIAL_QUEUE, BrokerSettings, create_app
from mlframework.sweep.events import EventStream
from mlframework.sweep.params import Grid
from mlframework.sweep.results import ResultsStore
from mlframework.sweep.tasks import SUCCESS

log = logging.getLogger(__name__)

_LOWER_IS_BETTER = ("loss", "error", "err", "mse", "rmse", "mae", "perplexity", "time")


@dataclass
class SweepSpec:
    """What to sweep: a project, its grid, the task to run and where to record."""

    project_dir: Path
    grid: Grid
    task: str = "train"
    results_root: Path = Path("results")
    metric: str | None = None  # the metric that ranks trials; guessed from the first one reported
    mode: str | None = None  # "max" or "min"; guessed from the metric's name
    sweep_id: str | None = None  # generated when None


@dataclass
class SweepOutcome:
    """How a sweep ended."""

    sweep_id: str
    directory: Path
    total: int
    records: list[dict[str, Any]]
    metric: str | None = None
    mode: str | None = None
    interrupted: bool = False

    @property
    def succeeded(self) -> int:
        return sum(1 for record in self.records if record.get("status") == SUCCESS)

    @property
    def failed(self) -> int:
        return sum(1 for record in self.records if record.get("status") != SUCCESS)

    @property
    def exit_status(self) -> int:
        """0 when every trial succeeded, 1 otherwise."""
        return 0 if self.succeeded == self.total and not self.interrupted else 1

    def ranked(self) -> list[dict[str, Any]]:
        """Records best first by the sweep's metric; trials without it (or failed) last."""
        return rank(self.records, self.metric, self.mode)


class SweepObserver:
    """Hooks the driver calls as the sweep goes; the default does nothing."""

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        """The sweep is recorded under ``directory`` and about to send ``total`` trials."""

    def trial_started(self, event: dict[str, Any]) -> None:
        """A worker took a trial (``event`` holds trial, host, gpu, worker, redelivered)."""

    def trial_output(self, trial: str, host: str, stream: str, line: str) -> None:
        """A trial printed a line."""

    def trial_finished(self, record: dict[str, Any]) -> None:
        """A trial's record was written."""

    def idle(self) -> None:
        """Called a few times a second while the driver waits."""

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        """Every trial is recorded (or the sweep was interrupted)."""


def guess_mode(metric: str) -> str:
    """``min`` for names that read like a loss or an error, else ``max``."""
    lowered = metric.lower()
    return "min" if any(word in lowered for word in _LOWER_IS_BETTER) else "max"


def pick_metric(records: list[dict[str, Any]], metric: str | None, mode: str | None) -> tuple[str | None, str | None]:
    """The metric and mode to rank by: as given, else the first metric any trial reported."""
    if metric is None:
        for record in sorted(records, key=lambda r: r.get("index", 0)):
            names = list(record.get("metrics") or {})
            if names:
                preferred = [n for n in names if "acc" in n.lower()] or names
                metric = preferred[0]
                break
    if metric is not None and mode is None:
        mode = guess_mode(metric)
    return metric, mode


def rank(records: list[dict[str, Any]], metric: str | None, mode: str | None) -> list[dict[str, Any]]:
    """Sort records best first by ``metric``; successful trials with the metric come first."""

    def key(record: dict[str, Any]) -> tuple[int, float, int]:
        value = (record.get("metrics") or {}).get(metric) if metric else None
        usable = record.get("status") == SUCCESS and isinstance(value, (int, float)) and value == value
        if not usable:
            return (1, 0.0, record.get("index", 0))
        return (0, -float(value) if mode == "max" else float(value), record.get("index", 0))

    return sorted(records, key=key)


def new_sweep_id(project_name: str) -> str:
    """A sortable, unique sweep id: ``YYYYmmdd-HHMMSS-<project>-<4 hex>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in project_name) or "sweep"
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


def trial_id(index: int, total: int) -> str:
    """``t0007``: zero-padded so ids sort in grid order."""
    return f"t{index:0{max(4, len(str(max(total - 1, 0))))}d}"


def check_task(project_dir: Path, task_name: str) -> None:
    """Fail early when the project's tasks.py defines no task ``task_name``.

    The project's tasks.py is imported here the way a worker imports it; when
    it needs packages only the workers have, the check is skipped.
    """
    from mlframework.sweep import tasks as task_registry
    from mlframework.sweep.project import import_project_tasks

    try:
        import_project_tasks(project_dir)
    except ImportError as exc:
        log.warning("could not import %s/tasks.py here (%s): task name not checked", project_dir, exc)
        return
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{project_dir / 'tasks.py'}: importing it failed: {type(exc).__name__}: {exc}") from None
    if task_name not in task_registry.REGISTERED:
        known = ", ".join(sorted(task_registry.REGISTERED)) or "none"
        raise ConfigError(f"{project_dir / 'tasks.py'}: no task named '{task_name}' (defined: {known})")


def _project_revision(project_dir: Path) -> dict[str, Any] | None:
    """The git commit of the project, for provenance; None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(project_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(project_dir), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _connect(app: Any, broker: BrokerSettings, timeout: float) -> Any:
    connection = app.connection_for_write()
    try:
        connection.ensure_connection(max_retries=3, interval_start=0.5, interval_step=1, timeout=timeout)
    except (OperationalError, OSError) as exc:
        connection.release()
        raise SweepError(f"cannot reach the broker at {broker.redacted_url()}: {exc}") from None
    return connection


@dataclass
class _Dispatcher:
    """Sends the grid's combinations as tasks, never more than ``window`` ahead."""

    app: Any
    spec: SweepSpec
    sweep_id: str
    total: int
    skip: set[str] = field(default_factory=set)
    sent: int = 0
    _combinations: Iterator[tuple[int, dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        self._combinations = enumerate(iter(self.spec.grid))

    @property
    def exhausted(self) -> bool:
        return self._combinations is None

    def send(self, connection: Any, how_many: int) -> int:
        assert self._combinations is not None or how_many <= 0
        count = 0
        with self.app.producer_or_acquire() as producer:
            while count < how_many and self._combinations is not None:
                try:
                    index, combination = next(self._combinations)
                except StopIteration:
                    self._combinations = None
                    break
                identifier = trial_id(index, self.total)
                if identifier in self.skip:
                    continue
                self.app.send_task(
                    self.spec.task,
                    kwargs={"params": combination, "trial": {"sweep": self.sweep_id, "id": identifier, "index": index}},
                    task_id=f"{self.sweep_id}.{identifier}",
                    queue=TRIAL_QUEUE,
                    producer=producer,
                )
                count += 1
        self.sent += count
        return count


def run_sweep(
    spec: SweepSpec,
    broker: BrokerSettings,
    observer: SweepObserver | None = None,
    *,
    window: int = 1000,
    health_check: Callable[[], None] | None = None,
    connect_timeout: float = 10.0,
) -> SweepOutcome:
    """Run every combination of ``spec.grid`` as a trial on the workers of ``broker``.

    Blocks until each trial is recorded. ``health_check`` is called while
    waiting and may raise to abort (e.g. when local workers died).
    """
    observer = observer or SweepObserver()
    project_dir = Path(spec.project_dir).resolve()
    check_task(project_dir, spec.task)
    total = spec.grid.count
    sweep_id = spec.sweep_id or new_sweep_id(project_dir.name)
    app = create_app(broker)
    connection = _connect(app, broker, connect_timeout)

    sweep_meta: dict[str, Any] = {
        "id": sweep_id,
        "project": str(project_dir),
        "task": spec.task,
        "parameters_file": spec.grid.source,
        "parameters": spec.grid.names,
        "trials": total,
        "status": "running",
        "created_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "driver_host": socket.gethostname(),
        "broker": broker.redacted_url(),
        "mlframework_version": __version__,
        "python": sys.version.split()[0],
        "project_revision": _project_revision(project_dir),
    }
    store = ResultsStore.create(spec.results_root, sweep_meta, spec.grid.names)
    running: dict[str, dict[str, Any]] = {}

    def on_event(event: dict[str, Any]) -> None:
        kind, trial = event.get("type"), str(event.get("trial"))
        if kind == "started":
            running[trial] = event
            observer.trial_started(event)
        elif kind == "output":
            lines = event.get("lines") or []
            store.append_output(trial, lines)
            for stream, line in lines:
                observer.trial_output(trial, str(event.get("host")), stream, line)
        elif kind == "finished":
            running.pop(trial, None)
            if store.record(event):
                observer.trial_finished(event)
            else:
                log.info("ignoring a second result for trial %s", trial)

    interrupted = False
    try:
        stream = EventStream(connection, sweep_id, on_event)
        dispatcher = _Dispatcher(app, spec, sweep_id, total)
        observer.sweep_started(sweep_id, total, store.directory)
        while len(store.records) < total:
            outstanding = dispatcher.sent - len(store.records)
            if not dispatcher.exhausted and outstanding < window:
                dispatcher.send(connection, window - outstanding)
            stream.drain(timeout=0.1)
            if health_check is not None:
                health_check()
            observer.idle()
        stream.cancel()
        stream.delete_queue()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        store.close()
        records = list(store.records.values())
        metric, mode = pick_metric(records, spec.metric, spec.mode)
        outcome = SweepOutcome(sweep_id, store.directory, total, records, metric, mode, interrupted)
        sweep_meta.update(
            status="interrupted" if interrupted or len(records) < total else "finished",
            finished_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            succeeded=outcome.succeeded,
            failed=outcome.failed,
            metric=metric,
            mode=mode,
        )
        store.write_sweep(sweep_meta)
        connection.release()
    observer.sweep_finished(outcome)
    return outcome
