"""The task API a project's ``tasks.py`` uses.

A task receives one :class:`Trial` (the combination of parameters and the
means to report on it) and returns a mapping of results, or raises
:class:`TrialFailed`. The :func:`task` decorator turns such a function into a
Celery task that tells the sweep driver everything that happens to the trial
(started, each output line, finished with its record) and never lets a failing
trial crash the worker.

The seed's two tasks come ready-made::

    import mlframework as mlf

    echo = mlf.echo_task()                    # sleeps n seconds (default 2), reporting each second
    train = mlf.train_task("train_mnist.py")  # runs the script with --name=value per parameter
"""

from __future__ import annotations

import functools
import logging
import numbers
import os
import shlex
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import Reject

from mlframework.exceptions import ConfigError
from mlframework.sweep import gpu_usage, liveness, scalars, trial_env
from mlframework.sweep.arguments import SEED_STYLE, ArgumentStyle
from mlframework.sweep.events import EventBuffer, EventPublisher, OutputStreamer
from mlframework.sweep.outcome import TrialNotSucceeded, raise_unless_succeeded
from mlframework.sweep.provenance import environment_for, worker_provenance
from mlframework.sweep.runner import CommandResult, run_command

log = logging.getLogger(__name__)

ENV_HOST = "MLFRAMEWORK_HOST"  # the host name trials report; set in worker containers
ENV_GPU = "MLFRAMEWORK_GPU"  # the GPU a worker is pinned to, when not CUDA_VISIBLE_DEVICES
ENV_PROJECT = "MLFRAMEWORK_PROJECT"  # the project directory a worker serves

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"

TaskFunction = Callable[["Trial"], Mapping[str, Any] | None]

#: Every task defined with :func:`task` in this process, by name: the driver
#: checks a sweep's task name against it before sending anything.
REGISTERED: dict[str, TaskFunction] = {}

_publishers: dict[int, EventPublisher] = {}


class TrialFailed(Exception):
    """Raised by a task to mark its trial FAILURE with a reason (not a crash)."""

    def __init__(self, message: str, exit_code: int | None = None, stderr_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = list(stderr_tail)


def worker_host() -> str:
    """The name of the host this worker runs on, as recorded in results."""
    return os.environ.get(ENV_HOST) or socket.gethostname()


def worker_gpu() -> str | None:
    """The GPU(s) this worker may use, or None on a CPU worker."""
    gpu = os.environ.get(ENV_GPU) or os.environ.get("CUDA_VISIBLE_DEVICES")
    return gpu if gpu not in (None, "", "-1") else None


@dataclass
class Trial:
    """One combination of parameters being run, as a task function sees it."""

    sweep_id: str
    id: str  # stable within the sweep, e.g. t0007
    index: int  # position of the combination in the grid
    params: dict[str, Any]
    host: str = field(default_factory=worker_host)
    gpu: str | None = field(default_factory=worker_gpu)
    project_dir: Path = field(default_factory=lambda: Path(os.environ.get(ENV_PROJECT) or os.getcwd()))
    redelivered: bool = False  # the broker gave this trial to a worker before
    attempt: int = 1  # 2, 3, ... when the sweep retries a failed trial (--retries)
    timeout: float | None = None  # seconds a command of this trial may run (--trial-timeout)
    sweep_dir: str | None = None  # the sweep's results directory on the driver's machine
    arguments: ArgumentStyle = SEED_STYLE  # how options() renders the parameters
    output_scalars: scalars.Patterns = None  # metrics read from the output (sweep/scalars.py)
    worker: str = ""  # the worker node running it (its registry of stoppable trials: sweep/control.py)
    stopped: str | None = None  # why the sweep stopped it early ("pruned"), when it did
    stop_latency_s: float | None = None  # seconds from the sweep's decision to stop it to the signal
    _output: OutputStreamer | None = field(default=None, repr=False)
    _publish: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    commands: list[CommandResult] = field(default_factory=list, repr=False)

    def options(self) -> list[str]:
        """The parameters rendered as command-line options (``--name=value`` unless the task says otherwise)."""
        return self.arguments.render(self.params)

    @property
    def workdir(self) -> Path:
        """This trial's own directory (made on first use), for what its script writes (``model.pt``).

        ``SWEEP_DIR/work/<trial>`` where the worker sees the sweep's directory
        (embedded mode), else ``$TMPDIR/mlframework-work/<sweep>/<trial>``.
        """
        return trial_env.workdir(self.sweep_dir, self.sweep_id, self.id)

    def print(self, *values: Any, sep: str = " ", stream: str = "stdout") -> None:
        """Send a line of output to whoever runs the sweep (and to the trial's log)."""
        text = sep.join(str(value) for value in values)
        for line in text.splitlines() or [""]:
            if self._output is not None:
                self._output.write(line, stream)
            else:
                print(line, file=sys.stderr if stream == "stderr" else sys.stdout)

    def _print_lines(self, stream: str, lines: list[str]) -> None:
        if self._output is not None:
            self._output.write_lines(stream, lines)
        else:
            print("\n".join(lines), file=sys.stderr if stream == "stderr" else sys.stdout)

    def _report_metrics(self, history: list[dict[str, Any]]) -> None:
        if self._publish is not None:
            self._publish(
                {
                    "type": "metrics",
                    "trial": self.id,
                    "index": self.index,
                    "attempt": self.attempt,
                    "host": self.host,
                    "history": history,
                }
            )

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
        merge_streams: bool = False,
    ) -> CommandResult:
        """Run a command (no shell), streaming its output; its metrics become the trial's.

        With ``check`` a non-zero exit raises :class:`TrialFailed` carrying the
        exit code and the tail of stderr. ``timeout`` (default: the sweep's
        ``--trial-timeout``) stops the command and fails the trial. The command
        gets ``MLFRAMEWORK_TRIAL_DIR`` (:attr:`workdir`) and, unless set, the
        slot's share of the CPUs as ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``;
        metrics it prints are read with :attr:`output_scalars` (sweep/scalars.py).
        ``merge_streams``: stderr into stdout, so the log keeps their exact order (see run_command).
        """
        child_env = {
            "MLFRAMEWORK_SWEEP_ID": self.sweep_id,
            "MLFRAMEWORK_TRIAL_ID": self.id,
            "MLFRAMEWORK_TRIAL_DIR": str(self.workdir),
            **trial_env.thread_limits(os.environ),
            **(env or {}),
        }
        reader = scalars.ScalarReader(self.output_scalars, exclude=self.params)

        def on_lines(stream: str, lines: list[str]) -> None:
            self._print_lines(stream, lines)
            if reader.active:
                reader.feed(lines)

        from mlframework.sweep.control import registered

        limit = timeout if timeout is not None else self.timeout
        with registered(self.worker, self.sweep_id, self.id) as registration:
            result = run_command(
                argv,
                cwd=cwd if cwd is not None else self.project_dir,
                env={**child_env, **registration.env},
                on_lines=on_lines,
                timeout=limit,
                on_start=registration.started,
                on_metrics=self._report_metrics if self._publish is not None else None,
                merge_streams=merge_streams,
            )
            request = registration.stop_request
            if request is not None and self.stopped is None:
                self.stopped, self.stop_latency_s = str(request.get("reason") or "stopped"), request.get("latency_s")
        if reader.final and not (reader.default and (result.metrics or result.history)):
            # Printed metrics, unless (for the default patterns) the script logged its own with metrics.log.
            result.metrics = {**reader.final, **result.metrics}
            result.history = reader.history + result.history
        self.commands.append(result)
        trial_env.remove_if_empty(self.workdir)
        if result.timed_out:
            raise TrialFailed(f"timed out after {limit:g}s (--trial-timeout)", result.exit_code, result.stderr_tail)
        if check and not result.ok:
            raise TrialFailed(_exit_reason(result.exit_code), result.exit_code, result.stderr_tail)
        return result


def _exit_reason(exit_code: int) -> str:
    if exit_code == 127:
        return "command could not be started (exit code 127)"
    if exit_code < 0:
        import signal

        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}"


def _publisher(app: Any) -> EventPublisher:
    publisher = _publishers.get(id(app))
    if publisher is None:
        publisher = _publishers[id(app)] = EventPublisher(app)
    return publisher


def _metrics_from_result(result: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in result.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and key not in params
    }


def _plain(value: Any) -> Any:
    """A JSON-able copy of a task's return value (unknown objects become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def execute_trial(function: TaskFunction, trial: Trial, publish: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run ``function`` on ``trial``, publishing its events; returns the finished record.

    Never raises for a failing trial: the failure is part of the record.
    """
    started_at = time.time()
    publish(
        {
            "type": "started",
            "trial": trial.id,
            "index": trial.index,
            "host": trial.host,
            "gpu": trial.gpu,
            "pid": os.getpid(),
            "redelivered": trial.redelivered,
            "attempt": trial.attempt,
            "time": started_at,
            **environment_for(trial.sweep_id),
        }
    )
    trial._publish = publish
    trial._output = OutputStreamer(
        lambda chunks: publish({"type": "output", "trial": trial.id, "host": trial.host, "chunks": chunks})
    )
    status, error, exit_code, stderr_tail, result = SUCCESS, None, None, [], {}
    clock = time.monotonic()
    gpu_sampler = gpu_usage.start(trial.gpu)  # GPU use per trial (sweep/gpu_usage.py)
    try:
        returned = function(trial)
        if returned is not None and not isinstance(returned, Mapping):
            raise TypeError(f"task returned {type(returned).__name__}, expected a mapping or None")
        result = _plain(returned or {})
    except TrialFailed as exc:
        status, error, exit_code, stderr_tail = FAILURE, str(exc), exc.exit_code, exc.stderr_tail
    except Exception as exc:  # a bug in the task: record it, keep the worker alive
        status, error = FAILURE, f"{type(exc).__name__}: {exc}"
        stderr_tail = traceback.format_exc().splitlines()[-20:]
        for line in stderr_tail:
            trial.print(line, stream="stderr")
        log.exception("trial %s of sweep %s raised", trial.id, trial.sweep_id)
    finally:
        trial._output.close()
        trial._output = None
        trial._publish = None
    duration = time.monotonic() - clock
    gpu_use = gpu_sampler.stop()

    metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    command = None
    if trial.commands:
        last = trial.commands[-1]
        command = shlex.join(last.argv)
        if exit_code is None:
            exit_code = last.exit_code
        for run in trial.commands:
            metrics.update(run.metrics)
            history.extend(run.history)
    metrics.update(_metrics_from_result(result, trial.params))
    record = {
        "type": "finished",
        "trial": trial.id,
        "index": trial.index,
        "status": status,
        "host": trial.host,
        "gpu": trial.gpu,
        "params": trial.params,
        "duration_s": round(duration, 6),
        "started_at": started_at,
        "finished_at": time.time(),
        "exit_code": exit_code,
        "command": command,
        "metrics": metrics,
        "history": history,
        "result": result,
        "error": error,
        "stderr_tail": stderr_tail,
        "redelivered": trial.redelivered,
        "attempt": trial.attempt,
        "pid": os.getpid(),
        "provenance": worker_provenance(trial.gpu),
        **gpu_use,
    }
    if trial.stopped:
        record["stopped"] = trial.stopped
        record["stop_latency_s"] = trial.stop_latency_s
    publish(record)
    return record


def message_trials(kwargs: Any) -> list[dict[str, Any]]:
    """The trials (``{"sweep", "id", "index", "attempt"}``) a task message carries: one, or a batch."""
    if not isinstance(kwargs, Mapping):
        return []
    batch = kwargs.get("batch")
    entries: list[Any] = batch if isinstance(batch, list) else [kwargs]
    return [
        entry["trial"]
        for entry in entries
        if isinstance(entry, Mapping)
        and isinstance(entry.get("trial"), Mapping)
        and entry["trial"].get("sweep")
        and entry["trial"].get("id")
    ]


def _controls(trial: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial message says about how to run it, beyond its parameters (absent in older messages)."""
    timeout = trial.get("timeout")
    return {
        "timeout": float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None,
        "sweep_dir": str(trial["sweep_dir"]) if trial.get("sweep_dir") else None,
    }


def _run_batch(
    function: TaskFunction,
    batch: list[dict[str, Any]],
    publisher: EventPublisher,
    worker: str,
    message_id: str,
    redelivered: bool,
) -> dict[str, Any]:
    """Run the trials of one message one after the other; their events go a few per message."""
    if not batch:
        return {"trials": 0}
    sweep_id = str(batch[0]["trial"]["sweep"])
    if redelivered:
        # A worker died during this batch, or before it: some of its trials may have finished,
        # one may have killed the worker. The driver sends the unrecorded ones again one per
        # message, where a trial that keeps killing workers is counted and stopped by itself.
        log.warning("batch %s came back from a lost worker: returned to the driver", message_id)
        publisher.publish(
            sweep_id,
            {"type": "returned", "batch": message_id, "worker": worker, "trials": [e["trial"] for e in batch]},
        )
        return {"returned": len(batch)}
    events = EventBuffer(lambda chunk: publisher.publish(sweep_id, {"type": "events", "events": chunk}))
    records = []
    for entry in batch:
        trial = entry["trial"]
        record = execute_trial(
            function,
            Trial(
                sweep_id=sweep_id,
                id=str(trial["id"]),
                index=int(trial.get("index", 0)),
                params=dict(entry["params"]),
                attempt=int(trial.get("attempt") or 1),
                **_controls(trial),
                worker=worker,
            ),
            lambda event: events.add({**event, "worker": worker, "message": message_id}),
        )
        records.append({"trial": record["trial"], "status": record["status"], "error": record["error"]})
    events.close()
    raise_unless_succeeded(records)  # Flower shows the message FAILURE (sweep/outcome.py)
    return {"trials": len(batch)}


def _of_live_sweep(app: Any, trials: list[dict[str, Any]]) -> bool:
    """Whether a message's trials belong to a live sweep (one cached broker check; see sweep/liveness.py)."""
    if not trials:
        return True  # not a sweep's message (e.g. called by hand): nothing to check
    first = trials[0]
    sweep_id, epoch = str(first["sweep"]), liveness.trial_epoch(first)
    if liveness.is_live(app, sweep_id, epoch):
        return True
    ids = [str(t["id"]) for t in trials]
    log.warning(
        "dropped %s of sweep %s (epoch %d): the sweep is finished, cancelled or unknown",
        ids[0] if len(ids) == 1 else f"{len(ids)} trials {ids[0]}..{ids[-1]}",
        sweep_id,
        epoch,
    )
    return False


def task(function: TaskFunction | None = None, *, name: str | None = None) -> Any:
    """Make ``function(trial)`` a sweep task (usable as ``@task`` or ``@task(name=...)``).

    The task is registered under ``name`` (default: the function's name),
    which is what ``mlframework sweep --task`` selects.
    """

    def decorate(fn: TaskFunction) -> Any:
        task_name = name or fn.__name__
        REGISTERED[task_name] = fn

        @functools.wraps(fn)
        def celery_task(
            self: Any,
            params: dict[str, Any] | None = None,
            trial: dict[str, Any] | None = None,
            batch: list[dict[str, Any]] | None = None,
        ) -> dict[str, Any]:
            if not _of_live_sweep(
                self.app, message_trials({"batch": batch} if batch is not None else {"trial": trial})
            ):
                return {"dropped": True}  # acknowledged: a trial of an ended sweep never runs
            publisher = _publisher(self.app)
            delivery_info = self.request.delivery_info or {}
            if batch is not None:
                return _run_batch(
                    fn, batch, publisher, self.request.hostname, self.request.id, bool(delivery_info.get("redelivered"))
                )
            assert params is not None and trial is not None, "a trial message carries params and trial"
            sweep_id = str(trial["sweep"])
            if trial.get("avoid") == self.request.hostname and not delivery_info.get("redelivered"):
                # A retry of a trial that failed here: let another worker take it. Back here a
                # second time (redelivered), it runs here: no other worker was free.
                raise Reject("retry: another worker first", requeue=True)
            record = execute_trial(
                fn,
                Trial(
                    sweep_id=sweep_id,
                    id=str(trial["id"]),
                    index=int(trial.get("index", 0)),
                    params=dict(params),
                    redelivered=bool(delivery_info.get("redelivered")),
                    attempt=int(trial.get("attempt") or 1),
                    **_controls(trial),
                    worker=self.request.hostname or "",
                ),
                lambda event: publisher.publish(
                    sweep_id, {**event, "worker": self.request.hostname, "message": self.request.id}
                ),
            )
            raise_unless_succeeded([record])  # Flower shows the task FAILURE (sweep/outcome.py)
            return {"trial": record["trial"], "status": record["status"]}

        return shared_task(name=task_name, bind=True, throws=(TrialNotSucceeded,))(celery_task)

    if function is not None:
        return decorate(function)
    return decorate


def echo_task(name: str = "echo") -> Any:
    """The seed's smoke test: sleep ``n`` seconds (default 2), report each second, return the parameters."""

    def echo(trial: Trial) -> dict[str, Any]:
        seconds = float(trial.params.get("n", 2))
        trial.print(f"echo {trial.id} on {trial.host}: sleeping {seconds:g} s, params {trial.params}")
        elapsed = 0.0
        while elapsed < seconds:
            step = min(1.0, seconds - elapsed)
            time.sleep(step)
            elapsed += step
            trial.print(f"echo {trial.id} on {trial.host}: {elapsed:g}/{seconds:g} s")
        return dict(trial.params)

    echo.__name__ = name
    return task(echo, name=name)


def _caller_dir(depth: int = 2) -> Path:
    frame = sys._getframe(depth)  # the module that called train_task(), i.e. the project's tasks.py
    filename = frame.f_globals.get("__file__")
    return Path(filename).resolve().parent if filename else Path.cwd()


def train_task(
    script: str | os.PathLike[str],
    *,
    name: str = "train",
    python: str | None = None,
    args: Sequence[str] = (),
    output_scalars: scalars.Patterns = None,
    arguments: ArgumentStyle = SEED_STYLE,
    cwd: str = "project",
    merge_output: bool = False,
) -> Any:
    """The seed's ``train`` task: run ``python SCRIPT [ARGS] --name=value ...`` for each combination.

    ``script`` is relative to the calling ``tasks.py`` and must exist (checked
    when tasks.py is imported: by the driver before anything is sent, and by
    each worker as it starts); the command runs with the worker's Python
    unless ``python`` names another. A non-zero exit marks the trial FAILURE
    with the tail of its stderr.

    ``output_scalars``: metrics read from what the script prints (see
    :mod:`mlframework.sweep.scalars`; default: ``name: value`` / ``name=value``
    lines when the script does not use metrics.log; ``False``: none).
    ``arguments``: how parameters become options (:class:`~mlframework.sweep.arguments.ArgumentStyle`).
    ``cwd``: ``"project"`` (the directory of tasks.py) or ``"trial"`` (the trial's own
    :attr:`Trial.workdir`, so that files the script writes do not collide).
    ``merge_output``: stderr and stdout as one stream, in the exact order written (no ``[stderr]`` marks).
    """
    project_dir = _caller_dir()
    script_path = Path(script) if Path(script).is_absolute() else project_dir / script
    where = project_dir / "tasks.py"
    if not script_path.is_file():
        raise ConfigError(f"{where}: train_task({str(script)!r}): {script_path} does not exist")
    if python is not None and shutil.which(python) is None:
        raise ConfigError(f"{where}: train_task(python={python!r}): no such program")
    if cwd not in ("project", "trial"):
        raise ConfigError(f"{where}: train_task(cwd={cwd!r}): give 'project' or 'trial'")
    scalars.ScalarReader(output_scalars)  # a bad pattern is an error here, not in every trial

    def train(trial: Trial) -> None:
        trial.arguments, trial.output_scalars = arguments, output_scalars
        trial.run(
            [python or sys.executable, str(script_path), *args, *trial.options()],
            cwd=trial.workdir if cwd == "trial" else project_dir,
            merge_streams=merge_output,
        )

    train.__name__ = name
    train.argument_style = arguments  # type: ignore[attr-defined]  # for `mlframework params --project`
    return task(train, name=name)
