"""The sweep driver's entry points: start a sweep, or resume one, and run it to the end.

:func:`run_sweep` records a new sweep (``results/<id>/sweep.json``) and
:func:`resume_sweep` reopens one; both hand it to the loop of
:mod:`mlframework.sweep.driver.loop`, which sends the trials a trial source hands out
(a grid's combinations lazily, at most ``window`` ahead of the ones finished,
or a search's study: :mod:`mlframework.sweep.driver.dispatch`,
:mod:`mlframework.sweep.search.source`) and writes each event to the results store
before it is acknowledged.

Library use (a notebook does the same as the CLI)::

    from mlframework.sweep.driver.run import SweepSpec, run_sweep
    outcome = run_sweep(SweepSpec(project_dir, load_grid("parameters.yml")), broker)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlframework import __version__, envvars
from mlframework.exceptions import ConfigError, SweepError
from mlframework.sweep.driver import lock as driver_lock
from mlframework.sweep.driver.loop import SweepRun
from mlframework.sweep.driver.spec import SweepObserver, SweepOutcome, SweepSpec, sweep_total
from mlframework.sweep.params.command import check_values, parameter_values
from mlframework.sweep.params.grid import Grid
from mlframework.sweep.params.grid_file import load_grid
from mlframework.sweep.params.settings import SECTION, FileCommand, load_command
from mlframework.sweep.params.space import SearchSpace, load_space
from mlframework.sweep.records.objectives import constraints_from_meta, objectives_from_meta, objectives_to_meta
from mlframework.sweep.records.results import ResultsStore
from mlframework.sweep.search.plan import SearchPlan, SearchSettings
from mlframework.sweep.trials.provenance import read_project_revision
from mlframework.sweep.wire import lab, liveness
from mlframework.sweep.wire.app import BrokerSettings, create_app
from mlframework.sweep.wire.connection import DRIVER_HEARTBEAT
from mlframework.sweep.wire.connection import connect as _connect
from mlframework.sweep.wire.ids import check_sweep_id, new_sweep_id

__all__ = [
    "check_parameters",
    "check_task",
    "file_command",
    "resume_sweep",
    "run_sweep",
]

log = logging.getLogger(__name__)


def check_task(project_dir: Path, task_name: str, command: FileCommand | None = None) -> None:
    """Fail early when the project's tasks.py defines no task ``task_name`` (and no ``command`` is given).

    The project's tasks.py is imported here the way a worker imports it; when
    it needs packages only the workers have, the check is skipped. With ``command``
    (the parameters file gives it), the project needs no tasks.py; one that defines
    ``task_name`` too is refused: the command would be given in two places.
    """
    from mlframework.sweep.trials import tasks as task_registry
    from mlframework.sweep.trials.project import import_project_tasks

    tasks_file = project_dir / "tasks.py"
    if command is not None and not tasks_file.is_file():
        return
    if command is None and not tasks_file.is_file():
        raise ConfigError(
            f"{tasks_file}: no tasks.py in the project directory: define the task there, or give the command "
            f"in the parameters file ({SECTION}: command: ...)"
        )
    try:
        import_project_tasks(project_dir)
    except ImportError as exc:
        log.warning("could not import %s/tasks.py here (%s): task name not checked", project_dir, exc)
        return
    except ConfigError:
        raise
    except Exception as exc:
        from mlframework.sweep.driver.preflight import cause_tail

        raise ConfigError(
            f"{tasks_file}: importing it failed: {type(exc).__name__}: {exc}\n{cause_tail(exc)}"
        ) from None
    if command is not None:
        if task_name in task_registry.REGISTERED:
            raise ConfigError(
                f"{command.source}: {SECTION}.command: {tasks_file} defines the task '{task_name}' too: "
                "give its command in one place (or --task NAME, a name tasks.py does not define)"
            )
        return
    if task_name not in task_registry.REGISTERED:
        known = ", ".join(sorted(task_registry.REGISTERED)) or "none"
        raise ConfigError(f"{tasks_file}: no task named '{task_name}' (defined: {known})")


def file_command(parameters: Grid | SearchSpace) -> FileCommand | None:
    """The command the parameters file gives (its ``mlframework:`` section); None for a grid built in memory."""
    if not Path(parameters.source).is_file():
        return None
    return load_command(parameters.source)


def check_parameters(spec: SweepSpec) -> None:
    """Fail early when a parameter value uses a placeholder that does not exist (``{trail_dir}``).

    And when the file's command marks as new (``new_keys``) a parameter the file does not have.
    """
    check_values(parameter_values(spec.parameters), str(spec.parameters.source))
    if spec.command is not None:
        spec.command.check_names(list(parameter_values(spec.parameters)))


def _absolute(path: str) -> str:
    """``path`` made absolute, so that ``--resume`` works from any directory (a grid built in memory as is)."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _recorded_path(path: str, project: str | None) -> str:
    """A path from sweep.json: as recorded, else (a relative one, of an earlier version) under the project."""
    if Path(path).is_absolute() or Path(path).exists() or not project:
        return path
    return str(Path(project) / path) if (Path(project) / path).exists() else path


def _grid_digest(parameters: Grid | SearchSpace) -> str | None:
    """The sha256 of the parameters file the grid or space was read from."""
    try:
        return hashlib.sha256(Path(parameters.source).read_bytes()).hexdigest()
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
    """Run every combination of ``spec.grid`` (or the trials of ``spec.search``) on the workers of ``broker``.

    Blocks until each trial is recorded. ``health_check`` is called while
    waiting and may raise to abort (e.g. when local workers died).
    """
    project_dir = Path(spec.project_dir).resolve()
    if spec.command is None:
        spec = replace(spec, command=file_command(spec.parameters))
    check_task(project_dir, spec.task, spec.command)
    check_parameters(spec)
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
        "parameters_file": _absolute(spec.parameters.source),
        "parameters_sha256": _grid_digest(spec.parameters),
        "parameters": spec.parameters.names,
        "trials": sweep_total(spec),
        "search": spec.search.settings.to_meta() if spec.search is not None else None,
        "retries": spec.retries,
        "max_starts": spec.max_starts,
        "max_batch": spec.max_batch,
        "trial_timeout": spec.trial_timeout,
        "share": spec.share,
        "priority": spec.priority,
        "requested_metric": spec.metric,
        "requested_mode": spec.mode,
        "objectives": objectives_to_meta(spec.objectives) or None,  # several: a Pareto front
        "constraints": [str(constraint) for constraint in spec.constraints] or None,
        "status": "running",
        "epoch": 0,
        "created_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "driver_host": socket.gethostname(),
        "owner": os.environ.get(envvars.OWNER) or lab.owner(),
        "driver_pid": os.getpid(),  # with driver_host: whether a "running" sweep's driver still lives
        "broker": broker.redacted_url(),
        "mlframework_version": __version__,
        "python": sys.version.split()[0],
        "project_revision": revision.as_dict() if revision else None,
    }
    if spec.command is not None:  # the command the parameters file gives: --resume and reproduce run it again
        meta["command"] = spec.command.to_record()
    try:
        store = ResultsStore.create(spec.results_root, meta, spec.parameters.names)
        if revision:
            revision.save_diff(store.directory)
    except BaseException:
        connection.release()
        raise
    run = SweepRun(app, broker, connection, spec, sweep_id, store, meta, observer or SweepObserver(), heartbeat)
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
    share: float | None = None,
    priority: int | None = None,
) -> SweepOutcome:
    """Finish the sweep ``results_root/sweep_id``: trials with a record are never run again.

    Results that workers finished while no driver listened wait in the sweep's
    event queue and are recorded first. Trials sent before the driver stopped
    are awaited, not sent again, unless ``resend_in_flight`` (embedded mode,
    whose broker died with the driver) or the broker holds them nowhere (no
    trial queued, no worker running them): then they are sent again.
    ``share`` and ``priority`` replace the recorded ones when given.
    """
    from mlframework.sweep.records.catalog import read_meta  # catalog reads results with this module's ranking

    directory = Path(results_root) / sweep_id
    meta = read_meta(directory)  # a missing or damaged sweep.json: one line (SweepError)
    if not isinstance(meta.get("task"), str):
        raise SweepError(f"{directory / 'sweep.json'}: damaged (no 'task' in it)")
    search = meta.get("search")
    parameters_file = _recorded_path(meta["parameters_file"], meta.get("project"))
    plan: Grid | SearchPlan = (
        SearchPlan(load_space(parameters_file), _search_settings(search)) if search else load_grid(parameters_file)
    )
    parameters = plan.space if isinstance(plan, SearchPlan) else plan
    recorded_digest = meta.get("parameters_sha256")
    if recorded_digest and _grid_digest(parameters) != recorded_digest:
        raise SweepError(f"{parameters.source}: changed since sweep {sweep_id} started; start a new sweep instead")
    spec = SweepSpec(
        Path(meta["project"]),
        plan,
        meta["task"],
        Path(results_root),
        meta.get("requested_metric"),
        meta.get("requested_mode"),
        sweep_id,
        int(meta.get("retries") or 0),
        int(meta.get("max_starts") or 3),
        int(meta.get("max_batch") or 1),
        meta.get("trial_timeout"),
        share=float(meta.get("share") or 1.0) if share is None else share,
        priority=int(meta.get("priority") or 0) if priority is None else priority,
        command=FileCommand.from_record(meta["command"], str(directory / "sweep.json"))
        if meta.get("command")
        else None,
        objectives=objectives_from_meta(meta),
        constraints=constraints_from_meta(meta),
    )
    check_task(spec.project_dir, spec.task, spec.command)
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
        share=spec.share,
        priority=spec.priority,
    )
    meta.setdefault("resumed_at", []).append(_dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    try:
        store = ResultsStore(directory, parameters.names)
        store.write_sweep(meta)
    except BaseException:
        connection.release()
        raise
    run = SweepRun(app, broker, connection, spec, sweep_id, store, meta, observer or SweepObserver(), heartbeat)
    run.lock = lock
    start = 0 if resend_in_flight else store.dispatched()
    run.awaiting = set() if resend_in_flight or spec.search else run.unrecorded_below(start)
    run.drain_first = new_epoch  # results that came in while it was cancelled are recorded, not run again
    run.resend_in_flight = resend_in_flight
    return run.drive(window, health_check, start=start)


def _search_settings(meta: dict[str, Any]) -> SearchSettings:
    return SearchSettings.from_meta(meta)
