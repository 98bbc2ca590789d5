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

A script that is not written for this framework runs from a command line with placeholders::

    train = mlf.command_task("{python} train.py {args} --out_dir={trial_dir}/out", arguments="booleans")
"""

from __future__ import annotations

import functools
import logging
import numbers
import os
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import Reject

from mlframework import envvars
from mlframework.exceptions import ConfigError
from mlframework.statuses import FAILURE, SUCCESS
from mlframework.sweep.params.arguments import SEED_STYLE, ArgumentStyle, named_style, style_of
from mlframework.sweep.params.command import CommandTemplate, fill
from mlframework.sweep.trials import gpu_slot, gpu_usage, scalars
from mlframework.sweep.trials.provenance import environment_for, worker_provenance
from mlframework.sweep.trials.trial import Trial, TrialFailed
from mlframework.sweep.wire import liveness
from mlframework.sweep.wire.events import EventBuffer, EventPublisher, OutputStreamer
from mlframework.sweep.wire.outcome import TrialNotSucceeded, raise_unless_succeeded
from mlframework.sweep.wire.protocol import (
    Event,
    FinishedEvent,
    TrialEntry,
    TrialRef,
    events_batch,
    message_trials,
    output_event,
    returned_event,
    started_event,
    trial_controls,
)

__all__ = [
    "REGISTERED",
    "argument_style",
    "command_task",
    "echo_task",
    "execute_trial",
    "task",
    "train_task",
]

log = logging.getLogger(__name__)


TaskFunction = Callable[[Trial], Mapping[str, Any] | None]

#: Every task defined with :func:`task` in this process, by name: the driver
#: checks a sweep's task name against it before sending anything.
REGISTERED: dict[str, TaskFunction] = {}

_publishers: dict[int, EventPublisher] = {}


def argument_style(task_name: str) -> ArgumentStyle:
    """How the registered task ``task_name`` passes a trial's parameters to its script (the seed's when unknown)."""
    return style_of(REGISTERED.get(task_name))


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


def execute_trial(function: TaskFunction, trial: Trial, publish: Callable[[Event], None]) -> FinishedEvent:
    """Run ``function`` on ``trial``, publishing its events; returns the finished record.

    Never raises for a failing trial: the failure is part of the record.
    """
    started_at = time.time()
    environment = environment_for(trial.sweep_id).get("environment")
    publish(
        started_event(
            trial.id,
            trial.index,
            trial.attempt,
            trial.host,
            trial.gpu,
            os.getpid(),
            trial.redelivered,
            started_at,
            environment,
        )
    )
    trial._publish = publish
    trial._output = OutputStreamer(lambda chunks: publish(output_event(trial.id, trial.host, chunks)))
    slot = _take_gpu(trial)  # one trial per GPU of the host, across projects; None: no lock here
    try:
        # The record's start is when the GPU is the trial's: a wait for it is not the trial's time.
        record = _run_trial(function, trial, time.time() if slot is not None else started_at)
    finally:
        if slot is not None:
            slot.release()
    publish(record)
    return record


def _take_gpu(trial: Trial) -> gpu_slot.GpuSlot | None:
    """The trial's GPU slot (sweep/trials/gpu_slot.py), waited for; None without a lock directory or a GPU.

    Worker containers on GPU hosts set the lock directory; embedded mode and CPU workers take no lock.
    """
    directory = os.environ.get(envvars.GPU_LOCK_DIR)
    if not directory or trial.gpu is None:
        return None
    holder = gpu_slot.Holder(
        project=os.environ.get(envvars.CLUSTER_NAME, ""),
        sweep=trial.sweep_id,
        trial=trial.id,
        since="",
        pid=os.getpid(),
        host=trial.host,
        gpu=trial.gpu,
    )

    def waiting(held: list[gpu_slot.Holder]) -> None:
        who = "; ".join(h.describe() for h in held) or "nobody now, a trial ahead of it in line takes it"
        line = f"waiting for GPU {trial.gpu} of {trial.host}, held by {who}"
        log.info("trial %s of sweep %s: %s", trial.id, trial.sweep_id, line)
        trial.print(line, stream="stderr")

    try:
        return gpu_slot.acquire(directory, holder, int(os.environ.get(envvars.TRIALS_PER_GPU) or 1), waiting=waiting)
    except OSError as exc:  # a lock directory this worker cannot use: said in the trial's output, not fatal
        trial.print(f"cannot lock GPU {trial.gpu} in {directory} ({exc}): running without the lock", stream="stderr")
        log.warning("cannot lock GPU %s in %s: %s", trial.gpu, directory, exc)
        return None


def _run_trial(function: TaskFunction, trial: Trial, started_at: float) -> FinishedEvent:
    """Run the task function on ``trial`` (its output already streaming); returns the finished record."""
    status, error, exit_code, stderr_tail, result = SUCCESS, None, None, [], {}
    stdout_tail: list[str] = []
    clock = time.monotonic()
    gpu_sampler = gpu_usage.start(trial.gpu)  # GPU use per trial (sweep/trials/gpu_usage.py)
    try:
        returned = function(trial)
        if returned is not None and not isinstance(returned, Mapping):
            raise TypeError(f"task returned {type(returned).__name__}, expected a mapping or None")
        result = _plain(returned or {})
    except TrialFailed as exc:
        status, error, exit_code, stderr_tail = FAILURE, str(exc), exc.exit_code, exc.stderr_tail
        stdout_tail = exc.stdout_tail
    except Exception as exc:  # a bug in the task: record it, keep the worker alive
        status, error = FAILURE, f"{type(exc).__name__}: {exc}"
        stderr_tail = traceback.format_exc().splitlines()[-20:]
        for line in stderr_tail:
            trial.print(line, stream="stderr")
        log.exception("trial %s of sweep %s raised", trial.id, trial.sweep_id)
    finally:
        if trial._output is not None:
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
    record = FinishedEvent(
        type="finished",
        trial=trial.id,
        index=trial.index,
        status=status,
        host=trial.host,
        gpu=trial.gpu,
        params=trial.params,
        duration_s=round(duration, 6),
        started_at=started_at,
        finished_at=time.time(),
        exit_code=exit_code,
        command=command,
        metrics=metrics,
        history=history,
        result=result,
        error=error,
        stderr_tail=stderr_tail,
        redelivered=trial.redelivered,
        attempt=trial.attempt,
        pid=os.getpid(),
        provenance=worker_provenance(trial.gpu),
    )
    if stdout_tail and status != SUCCESS:
        record["stdout_tail"] = stdout_tail  # shown after stderr_tail (the traceback) on a failure
    record.update(gpu_use)  # type: ignore[typeddict-item]  # gpu_* fields (sweep/trials/gpu_usage.py)

    if trial.stopped:
        record["stopped"] = trial.stopped
        record["stop_latency_s"] = trial.stop_latency_s
    return record


def _run_batch(
    function: TaskFunction,
    batch: list[TrialEntry],
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
            returned_event(message_id, worker, [e["trial"] for e in batch]),
        )
        return {"returned": len(batch)}
    events = EventBuffer(lambda chunk: publisher.publish(sweep_id, events_batch(chunk)))
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
                **trial_controls(trial),
                worker=worker,
            ),
            lambda event: events.add({**event, "worker": worker, "message": message_id}),
        )
        records.append({"trial": record["trial"], "status": record["status"], "error": record["error"]})
    events.close()
    raise_unless_succeeded(records)  # Flower shows the message FAILURE (sweep/wire/outcome.py)
    return {"trials": len(batch)}


def _of_live_sweep(app: Any, trials: list[TrialRef]) -> bool:
    """Whether a message's trials belong to a live sweep (one cached broker check; see sweep/wire/liveness.py)."""
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
            batch: list[TrialEntry] | None = None,
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
                    **trial_controls(trial),
                    worker=self.request.hostname or "",
                ),
                lambda event: publisher.publish(
                    sweep_id, {**event, "worker": self.request.hostname, "message": self.request.id}
                ),
            )
            raise_unless_succeeded([record])  # Flower shows the task FAILURE (sweep/wire/outcome.py)
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


def _style(arguments: ArgumentStyle | str, where: str, call: str) -> ArgumentStyle:
    try:
        return named_style(arguments)
    except ValueError as exc:
        raise ConfigError(f"{where}: {call}(arguments={arguments!r}): {exc}") from None


def train_task(
    script: str | os.PathLike[str],
    *,
    name: str = "train",
    python: str | None = None,
    args: Sequence[str] = (),
    output_scalars: scalars.Patterns = None,
    arguments: ArgumentStyle | str = SEED_STYLE,
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
    :mod:`mlframework.sweep.trials.scalars`; default: ``name: value`` / ``name=value``
    lines when the script does not use metrics.log; ``False``: none).
    ``arguments``: how parameters become options: a preset's name (``"default"``,
    ``"separate"``, ``"booleans"``, ``"hydra"``, ``"lightning"``) or an
    :class:`~mlframework.sweep.params.arguments.ArgumentStyle`.
    ``args`` and string parameter values may hold placeholders such as ``{trial_dir}``
    (:mod:`mlframework.sweep.params.command`); for a whole command line, see :func:`command_task`.
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
    style = _style(arguments, str(where), "train_task")
    scalars.ScalarReader(output_scalars)  # a bad pattern is an error here, not in every trial
    extra = CommandTemplate.parse(list(args), f"{where}: train_task(args=...)") if args else None
    if extra is not None and extra.takes_args:
        raise ConfigError(
            f"{where}: train_task(args=...): no {{args}} here (the options follow ARGS); see command_task"
        )

    def train(trial: Trial) -> None:
        trial.arguments, trial.output_scalars = style, output_scalars
        places = {**trial.places(), "project_dir": str(project_dir)}
        trial.run(
            [
                python or sys.executable,
                str(script_path),
                *(extra.render((), places) if extra is not None else ()),
                *trial.options(places),
            ],
            cwd=trial.workdir if cwd == "trial" else project_dir,
            merge_streams=merge_output,
        )

    train.__name__ = name
    train.argument_style = style  # type: ignore[attr-defined]  # for `mlframework params --project`
    return task(train, name=name)


def command_task(
    command: str | Sequence[str],
    *,
    name: str = "train",
    arguments: ArgumentStyle | str = SEED_STYLE,
    output_scalars: scalars.Patterns = None,
    cwd: str = "project",
    env: Mapping[str, str] | None = None,
    merge_output: bool = False,
) -> Any:
    """A task that runs a command line with placeholders, for the scripts people already have::

        train = mlf.command_task(
            "{python} train.py config/train_shakespeare_char.py {args} --out_dir={trial_dir}/out",
            arguments="booleans",
        )

    ``command`` is split like a shell would (:mod:`shlex`; no shell runs it: each
    argument stays one argv element). Its placeholders, filled for each trial:

    * ``{args}`` (a word of its own): the parameters rendered in the ``arguments`` style
      (a preset's name, ``"default"``, ``"separate"``, ``"booleans"``, ``"hydra"``,
      ``"lightning"``, or an :class:`~mlframework.sweep.params.arguments.ArgumentStyle`);
    * ``{trial_dir}``: the trial's own directory (:attr:`Trial.workdir`), for its outputs;
    * ``{trial}``, ``{sweep}``: the trial's and the sweep's ids; ``{gpu}``: the GPU(s) of
      the trial's worker (empty on a CPU worker);
    * ``{project_dir}``: the directory of tasks.py; ``{python}``: the worker's Python
      (a first word ``python`` or ``python3`` is the same).

    ``{{name}}`` is a literal ``{name}``. String parameter values may use the same
    placeholders (``out_dir: "{trial_dir}/out"`` in parameters.yml). An unknown placeholder
    is an error when tasks.py is imported (here, by the driver, by ``--dry-run``).

    ``cwd``: ``"project"`` (default: the directory of tasks.py, which scripts that read
    their config and data relative to it need) or ``"trial"`` (``{trial_dir}``).
    ``env``: variables added to the command's environment (values may use placeholders).
    ``output_scalars`` and ``merge_output`` as for :func:`train_task`. A non-zero exit
    marks the trial FAILURE with the tail of its stderr.
    """
    project_dir = _caller_dir()
    where = f"{project_dir / 'tasks.py'}: command_task"
    template = CommandTemplate.parse(command, where)
    if cwd not in ("project", "trial"):
        raise ConfigError(f"{where}(cwd={cwd!r}): give 'project' or 'trial'")
    style = _style(arguments, str(project_dir / "tasks.py"), "command_task")
    extra_env = dict(env or {})
    for key, value in extra_env.items():
        CommandTemplate.parse([value], f"{where}(env={{{key!r}: ...}})")
    scalars.ScalarReader(output_scalars)  # a bad pattern is an error here, not in every trial
    if not template.takes_args:
        log.warning("%s: the command has no {args}: the parameters reach it only through placeholders", where)
    program = template.words[0]
    if "{" not in program and os.sep not in program and shutil.which(program) is None:
        log.warning("%s: no program %r on this machine's PATH (the worker's Python is {python})", where, program)

    def command_trial(trial: Trial) -> None:
        trial.arguments, trial.output_scalars = style, output_scalars
        places = {**trial.places(), "project_dir": str(project_dir)}
        trial.run(
            template.render(trial.options(places), places),
            cwd=trial.workdir if cwd == "trial" else project_dir,
            env={key: fill(value, places) for key, value in extra_env.items()},
            merge_streams=merge_output,
        )

    command_trial.__name__ = name
    command_trial.argument_style = style  # type: ignore[attr-defined]  # for `params --project`, --dry-run
    command_trial.command_template = template  # type: ignore[attr-defined]
    return task(command_trial, name=name)
