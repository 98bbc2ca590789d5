"""The sweep driver: expand a grid, send one task per combination, record every trial.

Trials are sent lazily, at most ``window`` ahead of the ones finished, so a
grid of millions of combinations starts at once and never sits in memory or
floods the broker. Workers report through the sweep's event queue (see
:mod:`mlframework.sweep.events`); each event is written to the results store
before it is acknowledged.

A search (``SweepSpec.search``) samples a SearchSpace instead: the hooks of
:mod:`mlframework.sweep.search_run` ask an Optuna study for one trial per free
worker slot, tell it every result and prune running trials.

Library use (a notebook does the same as the CLI)::

    from mlframework.sweep.driver import SweepSpec, run_sweep
    outcome = run_sweep(SweepSpec(project_dir, load_grid("parameters.yml")), broker)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu.exceptions import OperationalError

from mlframework import __version__
from mlframework.exceptions import ConfigError, SweepError
from mlframework.sweep import driver_lock, liveness
from mlframework.sweep.app import TRIAL_QUEUE, BrokerSettings, create_app
from mlframework.sweep.events import EventStream
from mlframework.sweep.ids import check_sweep_id, new_sweep_id, task_id, trial_id
from mlframework.sweep.params import Grid, load_grid
from mlframework.sweep.provenance import read_project_revision, save_environment, with_project
from mlframework.sweep.results import ResultsStore
from mlframework.sweep.tasks import FAILURE, SUCCESS, message_trials

PRUNED = "PRUNED"  # a search's trial stopped early (--prune); mlframework.sweep.search tells the study

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
    retries: int = 0  # re-runs of a trial that failed, each on another worker when there is one
    max_starts: int = 3  # a trial started this often without finishing (its worker died) is FAILURE
    max_batch: int = 200  # most trials one message carries when trials are short (1: one per message)
    trial_timeout: float | None = None  # seconds a trial's command may run before it is stopped and FAILURE
    # --- search (mlframework/sweep/search.py): ``grid`` is then a SearchSpace sampled by an Optuna study
    search: Any = None  # a SearchSettings, or None for a grid sweep


def sweep_total(spec: SweepSpec) -> int:
    """Trials a sweep runs: the grid's combinations, or a search's --trials."""
    return int(spec.search.trials) if spec.search is not None else spec.grid.count


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
        return sum(1 for record in self.records if record.get("status") not in (SUCCESS, PRUNED))

    @property
    def pruned(self) -> int:
        """Trials a search stopped early (--prune): not failures."""
        return sum(1 for record in self.records if record.get("status") == PRUNED)

    @property
    def exit_status(self) -> int:
        """0 when every trial succeeded (or was pruned by a search), 1 otherwise."""
        if self.interrupted or self.failed:
            return 1
        return 0 if self.succeeded + self.pruned == len(self.records) and self.records else 1

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

    def trial_output_lines(self, trial: str, host: str, stream: str, lines: list[str]) -> None:
        """A trial printed ``lines`` (one call per chunk that arrived); by default :meth:`trial_output` each."""
        for line in lines:
            self.trial_output(trial, host, stream, line)

    def trial_finished(self, record: dict[str, Any]) -> None:
        """A trial's record was written."""

    def trial_retried(self, attempt: dict[str, Any], retries: int) -> None:
        """A trial failed (``attempt`` is that attempt's record) and was sent again."""

    def trial_metrics(self, trial: str, host: str, history: list[dict[str, Any]]) -> None:
        """A running trial reported metrics (``metrics.log`` records, in order)."""

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
        number = float(value)  # type: ignore[arg-type]  # usable: an int or a float
        return (0, -number if mode == "max" else number, record.get("index", 0))

    return sorted(records, key=key)


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
        from mlframework.sweep.preflight import cause_tail

        raise ConfigError(
            f"{project_dir / 'tasks.py'}: importing it failed: {type(exc).__name__}: {exc}\n{cause_tail(exc)}"
        ) from None
    if task_name not in task_registry.REGISTERED:
        known = ", ".join(sorted(task_registry.REGISTERED)) or "none"
        raise ConfigError(f"{project_dir / 'tasks.py'}: no task named '{task_name}' (defined: {known})")


# Seconds between AMQP heartbeats of the driver's connection: a broker that stops answering without
# closing the connection (a frozen host, a cut cable) is noticed after two missed intervals.
DRIVER_HEARTBEAT = 10.0
# How long the driver tries to get the broker back before it gives up (the sweep can be resumed later).
RECONNECT_SECONDS = 180.0


def _connect(
    app: Any, broker: BrokerSettings, timeout: float, max_retries: int | None = 3, heartbeat: float | None = None
) -> Any:
    """A connection to the broker; ``timeout`` bounds all attempts together (kombu's ensure_connection)."""
    connection = app.connection_for_write(heartbeat=heartbeat) if heartbeat else app.connection_for_write()
    try:
        connection.ensure_connection(
            max_retries=max_retries, interval_start=0.5, interval_step=1, interval_max=3, timeout=timeout
        )
    except (OperationalError, OSError) as exc:
        connection.release()
        raise SweepError(f"cannot reach the broker at {broker.redacted_url()}: {exc}") from None
    return connection


def trial_controls(spec: SweepSpec, sweep_id: str) -> dict[str, Any]:
    """What every trial message carries besides its id and parameters (read by sweep/tasks.py ``_controls``)."""
    controls: dict[str, Any] = {"sweep_dir": str((Path(spec.results_root) / sweep_id).resolve())}
    if spec.trial_timeout:
        controls["timeout"] = spec.trial_timeout
    return controls


@dataclass
class _Dispatcher:
    """Sends the grid's combinations as tasks in grid order, from ``start``; and single trials again."""

    app: Any
    spec: SweepSpec
    sweep_id: str
    total: int
    start: int = 0
    skip: Collection[str] = field(default_factory=set)  # trials not to send (recorded: a live view of the store)
    epoch: int = 0  # the sweep's live epoch its messages carry (sweep/liveness.py)
    sent: int = 0
    next_index: int = 0  # the first grid index not sent yet
    _combinations: Iterator[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.next_index = self.start
        self._controls = trial_controls(self.spec, self.sweep_id)
        self._combinations = self.spec.grid.iter_from(self.start) if self.start < self.total else None

    @property
    def exhausted(self) -> bool:
        return self._combinations is None

    def _trial(self, index: int, attempt: int) -> dict[str, Any]:
        trial = {
            "sweep": self.sweep_id,
            "id": trial_id(index, self.total),
            "index": index,
            "attempt": attempt,
            **self._controls,
        }
        return liveness.stamp(trial, self.epoch)

    def _send_task(self, producer: Any, index: int, params: dict[str, Any], attempt: int, avoid: str | None) -> None:
        trial = self._trial(index, attempt)
        if avoid:
            trial["avoid"] = avoid
        self.app.send_task(
            self.spec.task,
            kwargs={"params": params, "trial": trial},
            # What Flower shows; given here because Celery's own repr of the arguments is slow.
            argsrepr="()",
            kwargsrepr=json.dumps({"trial": trial["id"], "params": params}, default=str),
            task_id=task_id(self.sweep_id, trial["id"], attempt),
            queue=TRIAL_QUEUE,
            producer=producer,
        )

    def _send_batch(self, producer: Any, entries: list[tuple[int, dict[str, Any]]]) -> None:
        if len(entries) == 1:
            self._send_task(producer, entries[0][0], entries[0][1], 1, None)
            return
        batch = [{"params": params, "trial": self._trial(index, 1)} for index, params in entries]
        first, last = batch[0]["trial"]["id"], batch[-1]["trial"]["id"]
        self.app.send_task(
            self.spec.task,
            kwargs={"batch": batch},
            argsrepr="()",
            kwargsrepr=json.dumps({"trials": f"{first}..{last}", "count": len(batch)}),
            task_id=f"{self.sweep_id}.{first}+{len(batch)}",
            queue=TRIAL_QUEUE,
            producer=producer,
        )

    def send(self, how_many: int, batch_size: Callable[[int], int] = lambda unsent: 1) -> int:
        """Send up to ``how_many`` more combinations; returns how many were sent.

        ``batch_size(unsent)`` says how many trials the next message carries, ``unsent``
        being the number of grid points not sent yet.
        """
        assert self._combinations is not None or how_many <= 0
        count = 0
        pending: list[tuple[int, dict[str, Any]]] = []
        size = batch_size(self.total - self.next_index)
        with self.app.producer_or_acquire() as producer:
            while count < how_many and self._combinations is not None:
                try:
                    combination = next(self._combinations)
                except StopIteration:
                    self._combinations = None
                    break
                index = self.next_index
                self.next_index += 1
                if trial_id(index, self.total) in self.skip:
                    continue
                pending.append((index, combination))
                count += 1
                if len(pending) >= size:
                    self._send_batch(producer, pending)
                    pending = []
                    size = batch_size(self.total - self.next_index)
            if pending:
                self._send_batch(producer, pending)
        self.sent += count
        return count

    def resend(self, index: int, attempt: int, avoid: str | None = None) -> None:
        """Send one trial again (a retry, or a trial lost while the driver was away)."""
        with self.app.producer_or_acquire() as producer:
            self._send_task(producer, index, self.spec.grid[index], attempt, avoid)


def trials_held(listings: dict[str, list[dict[str, Any]]] | None, sweep_id: str) -> set[str]:
    """The trial ids of sweep ``sweep_id`` in the task lists of ``inspect().active()`` (or ``reserved()``)."""
    return {
        str(trial["id"])
        for tasks in (listings or {}).values()
        for task in tasks
        for trial in message_trials(task.get("kwargs"))
        if trial["sweep"] == sweep_id
    }


def _absolute(path: str) -> str:
    """``path`` made absolute, so that ``--resume`` works from any directory (a grid built in memory as is)."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _recorded_path(path: str, project: str | None) -> str:
    """A path from sweep.json: as recorded, else (a relative one, of an earlier version) under the project."""
    if Path(path).is_absolute() or Path(path).exists() or not project:
        return path
    return str(Path(project) / path) if (Path(project) / path).exists() else path


def _grid_digest(grid: Grid) -> str | None:
    try:
        return hashlib.sha256(Path(grid.source).read_bytes()).hexdigest()
    except OSError:  # a grid built in memory (notebook)
        return None


def _lock_or_release(connection: Any, sweep_id: str) -> driver_lock.DriverLock | None:
    """The sweep's driver lock; the connection is released when another driver holds it."""
    try:
        return driver_lock.acquire(connection, sweep_id)
    except BaseException:
        connection.release()
        raise


def run_sweep(
    spec: SweepSpec,
    broker: BrokerSettings,
    observer: SweepObserver | None = None,
    *,
    window: int = 1000,
    health_check: Callable[[], None] | None = None,
    connect_timeout: float = 10.0,
    heartbeat: float = DRIVER_HEARTBEAT,
) -> SweepOutcome:
    """Run every combination of ``spec.grid`` as a trial on the workers of ``broker``.

    Blocks until each trial is recorded. ``health_check`` is called while
    waiting and may raise to abort (e.g. when local workers died).
    """
    project_dir = Path(spec.project_dir).resolve()
    check_task(project_dir, spec.task)
    sweep_id = check_sweep_id(spec.sweep_id) if spec.sweep_id else new_sweep_id(project_dir.name)
    if (Path(spec.results_root) / sweep_id).exists():
        raise SweepError(
            f"{Path(spec.results_root) / sweep_id}: sweep {sweep_id} exists; --resume it or pick another id"
        )
    app = create_app(broker)
    connection = _connect(app, broker, connect_timeout, heartbeat=heartbeat)
    lock = _lock_or_release(connection, sweep_id)
    revision = read_project_revision(project_dir)
    meta: dict[str, Any] = {
        "id": sweep_id,
        "project": str(project_dir),
        "task": spec.task,
        "parameters_file": _absolute(spec.grid.source),
        "parameters_sha256": _grid_digest(spec.grid),
        "parameters": spec.grid.names,
        "trials": sweep_total(spec),
        "search": spec.search.to_meta() if spec.search is not None else None,
        "retries": spec.retries,
        "max_starts": spec.max_starts,
        "max_batch": spec.max_batch,
        "trial_timeout": spec.trial_timeout,
        "requested_metric": spec.metric,
        "requested_mode": spec.mode,
        "status": "running",
        "epoch": 0,
        "created_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "driver_host": socket.gethostname(),
        "driver_pid": os.getpid(),  # with driver_host: whether a "running" sweep's driver still lives
        "broker": broker.redacted_url(),
        "mlframework_version": __version__,
        "python": sys.version.split()[0],
        "project_revision": revision.as_dict() if revision else None,
    }
    try:
        store = ResultsStore.create(spec.results_root, meta, spec.grid.names)
        if revision:
            revision.save_diff(store.directory)
    except BaseException:
        connection.release()
        raise
    run = _SweepRun(app, broker, connection, spec, sweep_id, store, meta, observer or SweepObserver(), heartbeat)
    run.lock = lock
    return run.drive(window, health_check)


def resume_sweep(
    results_root: str | os.PathLike[str],
    sweep_id: str,
    broker: BrokerSettings,
    observer: SweepObserver | None = None,
    *,
    resend_in_flight: bool = False,
    window: int = 1000,
    health_check: Callable[[], None] | None = None,
    connect_timeout: float = 10.0,
    heartbeat: float = DRIVER_HEARTBEAT,
) -> SweepOutcome:
    """Finish the sweep ``results_root/sweep_id``: trials with a record are never run again.

    Results that workers finished while no driver listened wait in the sweep's
    event queue and are recorded first. Trials sent before the driver stopped
    are awaited, not sent again, unless ``resend_in_flight`` (embedded mode,
    whose broker died with the driver) or the broker holds them nowhere (no
    trial queued, no worker running them): then they are sent again.
    """
    from mlframework.sweep.catalog import read_meta  # catalog reads results with this module's ranking

    directory = Path(results_root) / sweep_id
    meta = read_meta(directory)  # a missing or damaged sweep.json: one line (SweepError)
    if not isinstance(meta.get("task"), str):
        raise SweepError(f"{directory / 'sweep.json'}: damaged (no 'task' in it)")
    search = meta.get("search")
    parameters_file = _recorded_path(meta["parameters_file"], meta.get("project"))
    grid: Any = load_grid(parameters_file) if not search else _load_space(parameters_file)
    recorded_digest = meta.get("parameters_sha256")
    if recorded_digest and _grid_digest(grid) != recorded_digest:
        raise SweepError(f"{grid.source}: changed since sweep {sweep_id} started; start a new sweep instead")
    spec = SweepSpec(
        Path(meta["project"]),
        grid,
        meta["task"],
        Path(results_root),
        meta.get("requested_metric"),
        meta.get("requested_mode"),
        sweep_id,
        int(meta.get("retries") or 0),
        int(meta.get("max_starts") or 3),
        int(meta.get("max_batch") or 1),
        meta.get("trial_timeout"),
        search=_search_settings(search) if search else None,
    )
    check_task(spec.project_dir, spec.task)
    app = create_app(broker)
    connection = _connect(app, broker, connect_timeout, heartbeat=heartbeat)
    lock = _lock_or_release(connection, sweep_id)  # before anything is written: a second driver changes nothing
    epoch = liveness.next_epoch(meta)  # a sweep that ended (cancelled) starts a new epoch: its old messages stay dead
    new_epoch = epoch != int(meta.get("epoch") or 0)
    resend_in_flight = resend_in_flight or new_epoch
    meta.update(
        status="running",
        broker=broker.redacted_url(),
        driver_host=socket.gethostname(),
        driver_pid=os.getpid(),
        epoch=epoch,
    )
    meta.setdefault("resumed_at", []).append(_dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    try:
        store = ResultsStore(directory, grid.names)
        store.write_sweep(meta)
    except BaseException:
        connection.release()
        raise
    run = _SweepRun(app, broker, connection, spec, sweep_id, store, meta, observer or SweepObserver(), heartbeat)
    run.lock = lock
    start = 0 if resend_in_flight else store.dispatched()
    run.awaiting = set() if resend_in_flight or spec.search else run.unrecorded_below(start)
    run.drain_first = new_epoch  # results that came in while it was cancelled are recorded, not run again
    run.resend_in_flight = resend_in_flight
    return run.drive(window, health_check, start=start)


def _load_space(path: str) -> Any:
    from mlframework.sweep.space import load_space

    return load_space(path)


def _search_settings(meta: dict[str, Any]) -> Any:
    from mlframework.sweep.search import SearchSettings

    return SearchSettings.from_meta(meta)


class _SweepRun:
    """One driver session of a sweep: dispatch, consume events, record, retry."""

    # How often a resumed sweep checks that the trials it waits for are still somewhere.
    LOST_CHECK_INTERVAL = 30.0
    # Short trials go several to a message (one broker round trip, one pair of acks, a few event
    # messages for all of them) so that a batch takes about this long. Trials whose duration is
    # not known yet go one per message, at most PROBE_AHEAD of them waiting for a worker at once.
    BATCH_SECONDS = 0.25
    PROBE_AHEAD = 8
    # A message carries at most 1/TAIL_SHARE of what is left to send: near the end of the grid
    # batches shrink, so that the last trials spread over every worker.
    TAIL_SHARE = 4
    # How often, at most, the driver asks the workers whether they still run the leased trials.
    LEASE_CHECK_INTERVAL = 30.0

    def __init__(
        self,
        app: Any,
        broker: BrokerSettings,
        connection: Any,
        spec: SweepSpec,
        sweep_id: str,
        store: ResultsStore,
        meta: dict[str, Any],
        observer: SweepObserver,
        heartbeat: float = DRIVER_HEARTBEAT,
    ) -> None:
        self.app = app
        self.heartbeat = heartbeat
        self.broker = broker
        self.connection = connection
        self.spec = spec
        self.sweep_id = sweep_id
        self.store = store
        self.meta = meta
        self.observer = observer
        self.watches_output = (
            type(observer).trial_output is not SweepObserver.trial_output
            or type(observer).trial_output_lines is not SweepObserver.trial_output_lines
        )
        self.total = sweep_total(spec)
        self.resend_in_flight = False
        self.search: Any = None  # a search's SearchHooks (mlframework/sweep/search_run.py)
        self.starts: dict[tuple[str, int], int] = {}  # starts of each attempt of each trial
        self.start_events: set[tuple[Any, ...]] = set()
        self.seen: set[str] = set()  # trials with any event in this session
        self.awaiting: set[str] = set()  # sent before this session, not recorded: awaited
        self.drain_first = False  # record the events already queued before sending anything
        self.cancelled = False  # the sweep's live mark vanished: `mlframework cancel` ended it
        self.lock: driver_lock.DriverLock | None = None  # this driver's hold on the sweep (sweep/driver_lock.py)
        self.leases: dict[str, dict[str, Any]] = {}  # trials acknowledged early by their worker (sweep/lease.py)
        self.next_lease_check = 0.0
        self.dispatcher: _Dispatcher | None = None
        self.returned: set[str] = set()  # batches a lost worker gave back (their trials were sent again)
        self.trial_seconds: float | None = None  # how long a trial takes, as observed (None: not yet)
        for record in list(store.records.values())[-20:]:
            self._observe_duration(record.get("duration_s"))

    def _observe_duration(self, seconds: Any) -> None:
        """Follow the trials' duration: slowly towards shorter ones, at once towards much longer ones."""
        if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:
            return
        if self.trial_seconds is None or seconds > 4 * self.trial_seconds:
            self.trial_seconds = float(seconds)
        else:
            self.trial_seconds += 0.2 * (seconds - self.trial_seconds)

    def batch_size(self, unsent: int) -> int:
        """How many trials the next message carries; 0 while no trial's duration is known."""
        if self.trial_seconds is None:
            return 0
        if self.spec.max_batch <= 1:
            return 1
        by_time = int(self.BATCH_SECONDS / max(self.trial_seconds, 1e-6))
        return max(1, min(self.spec.max_batch, by_time, unsent // self.TAIL_SHARE))

    def _room(self, window: int) -> int:
        """How many trials may be sent now."""
        dispatcher = self.dispatcher
        assert dispatcher is not None
        if dispatcher.exhausted:
            return 0
        outstanding = dispatcher.sent + len(self.awaiting) - len(self.store.records) + self.store.recorded_before
        if self.search is not None:
            return self.search.room(outstanding)
        room = window - outstanding
        size = self.batch_size(self.total - dispatcher.next_index)
        if size == 0:  # probing: a few single trials at a time until one has finished
            return min(room, self.PROBE_AHEAD + len(self.seen) - dispatcher.sent)
        # Wait until a whole message's worth is free, unless the window is smaller than that.
        return room if room >= min(size, window) else 0

    def _done(self) -> bool:
        if self.search is not None:
            return self.search.done()
        return len(self.store.records) >= self.total

    def _params(self, index: int) -> dict[str, Any]:
        assert self.dispatcher is not None
        return self.search.params(index) if self.search is not None else self.spec.grid[index]

    def _dispatch(self, window: int) -> None:
        room = self._room(window)
        assert self.dispatcher is not None
        if room > 0 and self.dispatcher.send(room, lambda unsent: max(1, self.batch_size(unsent))):
            self.store.note_dispatched(self.dispatcher.next_index)

    def unrecorded_below(self, end: int) -> set[str]:
        """Trials of grid index < ``end`` with no record."""
        return {trial_id(i, self.total) for i in range(end)} - set(self.store.records)

    # -- events ---------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        kind, trial = event.get("type"), str(event.get("trial"))
        if kind == "events":  # a batch's events, in order
            for each in event.get("events") or []:
                if isinstance(each, dict):
                    self.on_event(each)
            return
        if kind == "returned":
            self._returned(event)
            return
        if kind == "cancelled":
            log.warning("sweep %s was cancelled (%s): the driver stops", self.sweep_id, event.get("by") or "?")
            self.cancelled = True
            return
        attempt = int(event.get("attempt") or 1)
        self.seen.add(trial)
        if kind == "started":
            self._started(trial, attempt, event)
        elif kind == "output":
            # "lines" (one [stream, line] pair per line) is what workers of an earlier checkout send.
            chunks = event.get("chunks") or event.get("lines") or []
            self.store.append_output(trial, chunks)
            if self.watches_output:
                for stream, text in chunks:
                    self.observer.trial_output_lines(trial, str(event.get("host")), stream, text.split("\n"))
        elif kind == "finished":
            self._finished(trial, attempt, event)
        elif kind == "leased":
            self.leases[trial] = {**event, "attempt": attempt, "misses": 0}
        elif kind == "metrics":
            history = [r for r in event.get("history") or [] if isinstance(r, dict)]
            self.observer.trial_metrics(trial, str(event.get("host")), history)
            if self.search is not None and trial not in self.store.records:
                self.search.report(trial, int(event.get("index", 0)), history)

    def _started(self, trial: str, attempt: int, event: dict[str, Any]) -> None:
        save_environment(self.store.directory, event)
        start = (trial, attempt, event.get("worker"), event.get("pid"), event.get("time"))
        if start in self.start_events:
            return  # the same event again (redelivered after a reconnect): not another start
        self.start_events.add(start)
        key = (trial, attempt)
        self.starts[key] = self.starts.get(key, 0) + 1
        if self.starts[key] > self.spec.max_starts and trial not in self.store.records:
            deaths = self.starts[key] - 1
            log.warning("trial %s started %d times without finishing: recorded FAILURE", trial, self.starts[key])
            # Workers drop a revoked task on arrival and stop it where it runs now.
            self.app.control.revoke(task_id(self.sweep_id, trial, attempt), terminate=True, signal="SIGKILL")
            self._finished(
                trial,
                attempt,
                {
                    **event,
                    "type": "finished",
                    "status": FAILURE,
                    "params": self._params(int(event.get("index", 0))),
                    "duration_s": None,
                    "exit_code": None,
                    "error": f"its worker died {deaths} times while running it (killed, or out of memory?); "
                    f"given up after {self.spec.max_starts} starts",
                },
                final=True,
            )
            return
        self.observer.trial_started(event)

    def _returned(self, event: dict[str, Any]) -> None:
        """A lost worker's batch came back: send its unrecorded trials again, one per message."""
        batch = str(event.get("batch"))
        if batch in self.returned:
            return
        self.returned.add(batch)
        assert self.dispatcher is not None
        again = [t for t in event.get("trials") or [] if str(t.get("id")) not in self.store.records]
        log.warning("a worker was lost during batch %s: %d unrecorded trial(s) sent again", batch, len(again))
        for trial in again:
            self.dispatcher.resend(int(trial["index"]), int(trial.get("attempt") or 1))

    def _finished(self, trial: str, attempt: int, event: dict[str, Any], final: bool = False) -> None:
        if event.get("stopped") == "cancelled":  # stopped by `mlframework cancel`: no record, --resume runs it
            log.info("trial %s was stopped by a cancel: not recorded", trial)
            return
        self._observe_duration(event.get("duration_s"))
        if trial in self.store.records:
            log.info("ignoring another result for trial %s", trial)
            return
        earlier = self.store.attempts.get(trial, [])
        if any(int(a.get("attempt") or 1) == attempt for a in earlier):
            log.info("ignoring a second result for attempt %d of trial %s", attempt, trial)
            return
        if not final and event.get("status") != SUCCESS and attempt <= self.spec.retries:
            self.store.record_attempt({**event, "attempt": attempt})
            self.store.append_output(
                trial, [["stdout", f"[mlframework] attempt {attempt} failed: {event.get('error')}; sent again"]]
            )
            assert self.dispatcher is not None
            self.dispatcher.resend(int(event["index"]), attempt + 1, avoid=event.get("worker"))
            self.observer.trial_retried(event, self.spec.retries)
            return
        record = {**event, "attempt": attempt, "attempts": [_attempt_summary(a) for a in earlier]}
        if self.search is not None:
            record["status"] = self.search.tell(int(event.get("index", 0)), record)
        record = with_project(record, self.meta.get("project_revision"))
        if self.store.record(record):
            self.observer.trial_finished(record)

    # -- lost trials ----------------------------------------------------------

    def resend_lost(self) -> None:
        """Send again the awaited trials that no queue holds and no worker runs."""
        candidates = sorted(self.awaiting - self.seen - set(self.store.records))
        if not candidates:
            return
        with self.connection.channel() as channel:
            queued = channel.queue_declare(TRIAL_QUEUE, passive=True).message_count
        if queued:
            return  # they may be among those: wait
        replies = self.app.control.inspect(timeout=2.0)
        held = trials_held(replies.active(), self.sweep_id) | trials_held(replies.reserved(), self.sweep_id)
        lost = [t for t in candidates if t not in held]
        if lost:
            log.warning(
                "%d trial(s) sent before the driver stopped are neither queued nor running: sent again", len(lost)
            )
        assert self.dispatcher is not None
        for trial in lost:
            attempt = len(self.store.attempts.get(trial, [])) + 1
            self.dispatcher.resend(int(trial[1:]), attempt)
            self.dispatcher.sent += 1
            self.awaiting.discard(trial)

    def check_leases(self) -> None:
        """Send again the leased trials that no worker runs any more.

        A worker acknowledges a long trial's message early (``sweep/lease.py``),
        so the broker no longer gives it back when that worker or its pool
        process dies: the driver does. A trial is lost when two checks in a row
        find it running nowhere (one missed reply is a slow worker, not a dead one).
        """
        for trial in [t for t in self.leases if t in self.store.records]:
            del self.leases[trial]
        if not self.leases or time.monotonic() < self.next_lease_check:
            return
        shortest = min(float(lease.get("lease_s") or self.LEASE_CHECK_INTERVAL) for lease in self.leases.values())
        running = trials_held(self.app.control.inspect(timeout=2.0).active(), self.sweep_id)
        self.next_lease_check = time.monotonic() + min(self.LEASE_CHECK_INTERVAL, max(1.0, shortest / 4))
        assert self.dispatcher is not None
        for trial, lease in list(self.leases.items()):
            if trial in running:
                lease["misses"] = 0
                continue
            lease["misses"] += 1
            if lease["misses"] >= 2:
                log.warning(
                    "trial %s, acknowledged early by %s, is running nowhere (worker killed?): sent again",
                    trial,
                    lease.get("worker"),
                )
                del self.leases[trial]
                self.dispatcher.resend(int(lease["index"]), lease["attempt"], avoid=lease.get("worker"))

    # -- the broker connection -----------------------------------------------------

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        return (*self.connection.connection_errors, *self.connection.channel_errors, OSError, OperationalError)

    def _reconnect(self, error: BaseException) -> EventStream:
        """A new connection and event consumer after the broker went away (a restart, a network cut).

        Unacknowledged events come again and are recorded once; trials in the
        broker's durable queue wait there meanwhile.
        """
        log.warning("lost the broker connection (%s); reconnecting to %s", error, self.broker.redacted_url())
        try:
            self.connection.release()
        except Exception:  # the old connection is already broken; closing it may fail too
            log.debug("closing the broken connection failed", exc_info=True)
        self.connection = _connect(
            self.app, self.broker, timeout=RECONNECT_SECONDS, max_retries=None, heartbeat=self.heartbeat
        )
        if self.lock is not None:
            self.lock = driver_lock.acquire(self.connection, self.sweep_id)  # refused if another took over meanwhile
        stream = EventStream(self.connection, self.sweep_id, self.on_event, before_ack=self.store.sync)
        log.warning("reconnected to the broker; the sweep goes on")
        return stream

    # -- the loop -------------------------------------------------------------

    def drive(self, window: int, health_check: Callable[[], None] | None, start: int = 0) -> SweepOutcome:
        store, meta = self.store, self.meta
        interrupted = False
        # -- live report (issue 15): results/<id>/report.html rendered now and then by a child process
        from mlframework.report.live import LiveReport

        live = LiveReport(store.directory)
        # -- end live report
        try:
            epoch = int(meta.get("epoch") or 0)
            liveness.mark_live(self.connection, self.sweep_id, epoch)
            stream = EventStream(self.connection, self.sweep_id, self.on_event, before_ack=self.store.sync)
            if self.spec.search is not None:
                from mlframework.sweep.search_run import start_search

                self.search = start_search(self, window, epoch)
            else:
                self.dispatcher = _Dispatcher(
                    self.app, self.spec, self.sweep_id, self.total, start=start, skip=store.records.keys(), epoch=epoch
                )
            self.observer.sweep_started(self.sweep_id, self.total, store.directory)
            if self.awaiting or self.drain_first:
                stream.drain(timeout=1.0)  # what finished while the driver was away
            next_lost_check = time.monotonic()
            # A sweep cancelled from elsewhere (`mlframework cancel`, sweep/cancel.py) gets a "cancelled" event
            # on its event queue (on_event sets self.cancelled): no broker round trip here, which a frozen
            # broker would block before the heartbeat check could notice it.
            while not self._done() and not self.cancelled:
                try:
                    self._dispatch(window)
                    stream.drain(timeout=0.1, until=lambda: self._room(window) > 0 or self._done())
                    self.connection.heartbeat_check()
                    if self.awaiting and time.monotonic() >= next_lost_check:
                        self.resend_lost()
                        next_lost_check = time.monotonic() + self.LOST_CHECK_INTERVAL
                    self.check_leases()
                except self._connection_errors() as exc:
                    stream = self._reconnect(exc)
                if health_check is not None:
                    health_check()
                self.observer.idle()
                live.tick(len(store.records))  # live report: a clock check, now and then a child started
            stream.cancel()
            if not self.cancelled:  # a cancelled sweep keeps its event queue: --resume collects what is in it
                stream.delete_queue()
                liveness.end_sweep(self.connection, self.sweep_id, epoch, "finished")  # its leftover copies never run
            if self.lock is not None:
                self.lock.release(delete=not self.cancelled)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            store.close()
            records = list(store.records.values())
            metric, mode = pick_metric(records, self.spec.metric, self.spec.mode)
            outcome = SweepOutcome(
                self.sweep_id, store.directory, self.total, records, metric, mode, interrupted or self.cancelled
            )
            unfinished = not self._done() if self.search is not None else len(records) < self.total
            meta.update(
                status="cancelled" if self.cancelled else "interrupted" if interrupted or unfinished else "finished",
                finished_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                succeeded=outcome.succeeded,
                failed=outcome.failed,
                pruned=outcome.pruned,
                metric=metric,
                mode=mode,
            )
            store.write_sweep(meta)
            live.finish()  # live report: the final state
            self.connection.release()
            if interrupted:  # the summary of what was recorded, before the interrupt goes on up
                self.observer.sweep_finished(outcome)
        self.observer.sweep_finished(outcome)
        return outcome


def _attempt_summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "attempt",
        "status",
        "host",
        "gpu",
        "worker",
        "exit_code",
        "error",
        "stderr_tail",
        "duration_s",
        "started_at",
        "finished_at",
        "metrics",
    )
    return {key: record.get(key) for key in keys}
