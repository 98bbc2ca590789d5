"""The protocol between workers and the sweep driver: task messages and trial events as typed definitions.

Both sides build and read these shapes here and nowhere else. On the wire they
are plain JSON objects (kombu's json serializer); the ``TypedDict`` classes say
which keys each carries. Workers build events with the ``*_event`` functions;
the driver turns what it consumes into a typed event with :func:`decode`, which
fills the defaults older workers leave out, so the driver reads keys, not
``.get()`` guesses. The events (``type``):

* ``started``  -- a worker took the trial (host, GPU, worker node, pid, redelivery flag)
* ``output``   -- the trial's output, a few lines at a time (``chunks``: ``[stream, text]``)
* ``metrics``  -- ``metrics.log`` records of a running trial
* ``finished`` -- the trial's full record (status, metrics, exit code, ...)
* ``leased``   -- a worker acknowledged a long trial's message early (sweep/trials/lease.py)
* ``returned`` -- a lost worker's batch came back: its trials, to send again
* ``events``   -- several events of a batch of short trials in one message, in order
* ``cancelled``-- ``mlframework cancel`` stopped the sweep (sweep/driver/cancel.py)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

log = logging.getLogger(__name__)

# What a trial's own code reports is open-ended: metric names are the script's, and their values
# are what it logged (numbers, but metrics.log keeps strings such as "nan", and a task may return any JSON).
Metrics = dict[str, Any]
# metrics.log records ({"time", "step", "values": Metrics}) or values read from the output, in order.
History = list[dict[str, Any]]


# -- task messages (driver -> worker) ---------------------------------------------------------

#: The task every worker has, with or without a tasks.py: it runs the command a sweep's parameters
#: file gives (sweep/params/settings.py), carried in each trial's ``command``.
COMMAND_TASK = "mlframework.command"


class _TrialRefBase(TypedDict):
    sweep: str  # the sweep id
    id: str  # the trial id, e.g. t0007
    index: int  # its grid index (a search: the study's trial number)
    attempt: int  # 1, then 2, 3, ... for --retries


class TrialRef(_TrialRefBase, total=False):
    """The ``trial`` a task message carries (one per trial of a batch)."""

    epoch: int  # the sweep's live epoch it was sent in (sweep/wire/liveness.py)
    sweep_dir: str  # the sweep's results directory on the driver's machine
    timeout: float  # --trial-timeout, seconds
    avoid: str  # a retry: the worker where the last attempt failed
    metrics: list[str]  # the metrics the sweep asked for (--metric, --prune-metric): read from output in any spelling
    command: dict[str, Any]  # the parameters file's command (FileCommand.to_record), for COMMAND_TASK


class TrialEntry(TypedDict):
    """One trial of a message: its parameters and its :class:`TrialRef`."""

    params: dict[str, Any]
    trial: TrialRef


def message_trials(kwargs: Any) -> list[TrialRef]:
    """The trials a task message's kwargs carry: one (``params``, ``trial``), or a ``batch``."""
    if not isinstance(kwargs, Mapping):
        return []
    batch = kwargs.get("batch")
    entries: list[Any] = batch if isinstance(batch, list) else [kwargs]
    return [
        cast(TrialRef, entry["trial"])
        for entry in entries
        if isinstance(entry, Mapping)
        and isinstance(entry.get("trial"), Mapping)
        and entry["trial"].get("sweep")
        and entry["trial"].get("id")
    ]


def trial_controls(trial: Mapping[str, Any]) -> dict[str, Any]:
    """How a message says to run its trial beyond the parameters: ``timeout``, ``sweep_dir`` (None if absent).

    And ``metric_names`` when the message names the metrics the sweep asked for
    (older drivers' messages do not); ``command`` when it carries the parameters file's command.
    """
    timeout = trial.get("timeout")
    controls: dict[str, Any] = {
        "timeout": float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None,
        "sweep_dir": str(trial["sweep_dir"]) if trial.get("sweep_dir") else None,
    }
    names = trial.get("metrics")
    if isinstance(names, list) and names:
        controls["metric_names"] = tuple(str(name) for name in names if isinstance(name, str) and name)
    command = trial.get("command")
    if isinstance(command, Mapping):
        controls["command"] = dict(command)
    return controls


# -- trial events (worker -> driver) -----------------------------------------------------------


class _Sender(TypedDict, total=False):
    worker: str  # the Celery node name, added by the worker's publisher
    message: str  # the task message's id


class _StartedBase(TypedDict):
    type: Literal["started"]
    trial: str
    index: int
    attempt: int
    host: str
    gpu: str | None
    pid: int
    redelivered: bool
    time: float  # when it started (epoch seconds)


class StartedEvent(_StartedBase, _Sender, total=False):
    """A worker took a trial."""

    environment: dict[str, Any]  # the worker's package list, once per sweep and process (sweep/trials/provenance.py)


class OutputEvent(_Sender):
    """Output lines of a running trial."""

    type: Literal["output"]
    trial: str
    host: str
    chunks: list[list[str]]  # [stream, text]: consecutive lines of one stream joined by newlines


class MetricsEvent(_Sender):
    """``metrics.log`` records of a running trial, in order."""

    type: Literal["metrics"]
    trial: str
    index: int
    attempt: int
    host: str
    history: History


class _FinishedBase(TypedDict):
    type: Literal["finished"]
    trial: str
    index: int
    attempt: int
    status: str  # SUCCESS or FAILURE (a search's driver may record PRUNED)


class TrialOutcome(TypedDict, total=False):
    """What a finished trial reports beyond who it is: the fields a trial's record shares with its event.

    The driver's record of the trial is :class:`mlframework.sweep.records.record.TrialRecord`.
    """

    host: str
    gpu: str | None
    params: dict[str, Any]  # the trial's parameters, in grid (or search space) order
    duration_s: float | None
    started_at: float  # epoch seconds
    finished_at: float
    exit_code: int | None
    command: str | None  # the last command line the trial ran
    metrics: Metrics  # final values
    history: History
    result: Any  # what the task function returned, made JSON-able: the task's own business
    error: str | None
    stderr_tail: list[str]  # a failure's last stderr lines (its traceback)
    stdout_tail: list[str]  # a failure's last stdout lines, shown after stderr_tail
    redelivered: bool
    pid: int
    # Where the trial ran and from what: packages (hash), hostname, python, gpu_model, gpu_driver,
    # image (sweep/trials/provenance.py); the driver adds the project's commit and diff_sha256.
    provenance: dict[str, Any]
    stopped: str  # why the sweep stopped it early: "pruned", "cancelled"
    stop_latency_s: float | None
    # GPU use while it ran (sweep/trials/gpu_usage.py): absent on CPU workers
    gpu_util_mean: float
    gpu_util_peak: float
    gpu_memory_mean_mib: float
    gpu_memory_peak_mib: float
    gpu_samples: int


class FinishedEvent(_FinishedBase, _Sender, TrialOutcome, total=False):
    """A trial finished: its full record, as the driver writes it to the results store (less ``type``)."""


class LeasedEvent(TypedDict):
    """A worker acknowledged a long trial's message early: the driver now watches that it still runs."""

    type: Literal["leased"]
    trial: str
    index: int
    attempt: int
    worker: str
    pid: int | None
    lease_s: float
    time: float


class ReturnedEvent(TypedDict):
    """A batch came back from a lost worker: its trials, for the driver to send again one per message."""

    type: Literal["returned"]
    batch: str  # the message id
    worker: str
    trials: list[TrialRef]


class CancelledEvent(TypedDict):
    """``mlframework cancel`` ended the sweep: the driver stops."""

    type: Literal["cancelled"]
    by: str  # user@host


class EventsBatch(TypedDict):
    """Events of a batch of short trials, in order, in one message."""

    type: Literal["events"]
    events: list[Event]


Event = (
    StartedEvent
    | OutputEvent
    | MetricsEvent
    | FinishedEvent
    | LeasedEvent
    | ReturnedEvent
    | CancelledEvent
    | EventsBatch
)


def started_event(
    trial: str,
    index: int,
    attempt: int,
    host: str,
    gpu: str | None,
    pid: int,
    redelivered: bool,
    time: float,
    environment: dict[str, Any] | None = None,
) -> StartedEvent:
    """The event a worker sends when it takes a trial."""
    event = StartedEvent(
        type="started",
        trial=trial,
        index=index,
        host=host,
        gpu=gpu,
        pid=pid,
        redelivered=redelivered,
        attempt=attempt,
        time=time,
    )
    if environment is not None:
        event["environment"] = environment
    return event


def output_event(trial: str, host: str, chunks: list[list[str]]) -> OutputEvent:
    """Output chunks of a running trial."""
    return OutputEvent(type="output", trial=trial, host=host, chunks=chunks)


def metrics_event(trial: str, index: int, attempt: int, host: str, history: History) -> MetricsEvent:
    """``metrics.log`` records of a running trial."""
    return MetricsEvent(type="metrics", trial=trial, index=index, attempt=attempt, host=host, history=history)


def leased_event(trial: TrialRef, worker: str, pid: int | None, lease_s: float, time: float) -> LeasedEvent:
    """The event a worker sends before it acknowledges a long trial's message."""
    return LeasedEvent(
        type="leased",
        trial=str(trial["id"]),
        index=int(trial.get("index", 0)),
        attempt=int(trial.get("attempt") or 1),
        worker=worker,
        pid=pid,
        lease_s=lease_s,
        time=time,
    )


def returned_event(batch: str, worker: str, trials: list[TrialRef]) -> ReturnedEvent:
    """A lost worker's batch, given back to the driver."""
    return ReturnedEvent(type="returned", batch=batch, worker=worker, trials=trials)


def cancelled_event(by: str) -> CancelledEvent:
    """Tells the sweep's driver that ``by`` cancelled the sweep."""
    return CancelledEvent(type="cancelled", by=by)


def events_batch(events: list[Any]) -> EventsBatch:
    """Several events in one message."""
    return EventsBatch(type="events", events=events)


# -- the driver's side ---------------------------------------------------------------------------

_TRIAL_EVENTS = ("started", "output", "metrics", "finished", "leased")


def decode(body: Any) -> Event | None:
    """The typed event a consumed message holds, defaults filled in; None (logged) for what is not an event.

    Older workers leave ``attempt`` and ``index`` out (1 and 0), and sent output
    as ``lines`` (one ``[stream, line]`` pair per line) instead of ``chunks``.
    """
    if not isinstance(body, Mapping):
        log.warning("ignoring a malformed event: %r", body)
        return None
    kind = body.get("type")
    try:
        if kind == "events":
            events = [decode(each) for each in body.get("events") or [] if isinstance(each, Mapping)]
            return events_batch([event for event in events if event is not None])
        if kind == "returned":
            trials = [t for t in body.get("trials") or [] if isinstance(t, Mapping) and "index" in t]
            return ReturnedEvent(
                type="returned",
                batch=str(body.get("batch")),
                worker=str(body.get("worker") or ""),
                trials=[cast(TrialRef, {**t, "attempt": int(t.get("attempt") or 1)}) for t in trials],
            )
        if kind == "cancelled":
            return cancelled_event(str(body.get("by") or "?"))
        if kind in _TRIAL_EVENTS:
            event: dict[str, Any] = {**body, "trial": str(body.get("trial"))}
            if kind != "output":
                event.update(attempt=int(body.get("attempt") or 1), index=int(body.get("index", 0)))
            if kind == "output":
                event["chunks"] = body.get("chunks") or body.get("lines") or []
                event["host"] = str(body.get("host"))
            elif kind == "metrics":
                event["history"] = [r for r in body.get("history") or [] if isinstance(r, dict)]
                event["host"] = str(body.get("host"))
            return cast(Event, event)
    except (TypeError, ValueError) as exc:
        log.warning("ignoring a malformed %s event (%s): %r", kind, exc, body)
        return None
    log.warning("ignoring an event of unknown type %r", kind)
    return None
