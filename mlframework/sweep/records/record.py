"""A trial's record as a typed dict: one line of ``trials.jsonl`` (or ``attempts.jsonl``), as every module passes it.

The worker builds the bulk of it (:class:`~mlframework.sweep.wire.protocol.FinishedEvent`);
the driver adds the earlier attempts and the project's revision, a search may
set the status (PRUNED), and :class:`~mlframework.sweep.records.results.ResultsStore`
writes it as JSON. Read back, a record holds what its writer put there: a field
is optional unless every version of mlframework wrote it, so readers use
``.get()``. These types describe the JSON; they change nothing on disk.
"""

from __future__ import annotations

from typing import Any, TypedDict

from mlframework.sweep.params.grid import Value

# What a trial's own code reports is open-ended: metric names are the script's, and their values
# are what it logged (numbers, but metrics.log keeps strings, e.g. "nan", and JSON anything).
Metrics = dict[str, Any]
# metrics.log records ({"time", "step", "values": Metrics}) or values read from the output, in order.
History = list[dict[str, Any]]
# Where the trial ran and from what: packages (hash), hostname, python, gpu_model, gpu_driver,
# image, and the project's commit and diff_sha256 (sweep/trials/provenance.py).
Provenance = dict[str, Any]


class AttemptSummary(TypedDict, total=False):
    """What a trial's record keeps of each earlier, failed attempt (``--retries``); None where unknown."""

    attempt: int | None
    status: str | None
    host: str | None
    gpu: str | None
    worker: str | None
    exit_code: int | None
    error: str | None
    stderr_tail: list[str] | None
    duration_s: float | None
    started_at: float | None
    finished_at: float | None
    metrics: Metrics | None


class _RecordBase(TypedDict):
    trial: str  # the trial id, e.g. t0007: every record has it (a line without it is not read back)


class TrialRecord(_RecordBase, total=False):
    """One trial's record (see the module docstring); keys as in ``trials.jsonl``."""

    index: int  # its grid index (a search: the study's trial number)
    attempt: int  # 1, then 2, 3, ... for --retries
    status: str  # SUCCESS, FAILURE or PRUNED (mlframework.statuses)
    host: str
    gpu: str | None
    worker: str  # the Celery node name
    message: str  # the task message's id
    params: dict[str, Value]  # the trial's parameters, in grid (or search space) order
    duration_s: float | None
    started_at: float  # epoch seconds
    finished_at: float
    exit_code: int | None
    command: str | None  # the last command line the trial ran
    metrics: Metrics  # final values
    history: History
    result: Any  # what the task function returned, made JSON-able: the task's own business
    error: str | None
    stderr_tail: list[str]
    redelivered: bool
    pid: int
    provenance: Provenance
    stopped: str  # why the sweep stopped it early: "pruned", "cancelled"
    stop_latency_s: float | None
    attempts: list[AttemptSummary]  # the earlier attempts, on the final record only
    # GPU use while it ran (sweep/trials/gpu_usage.py): absent on CPU workers
    gpu_util_mean: float
    gpu_util_peak: float
    gpu_memory_mean_mib: float
    gpu_memory_peak_mib: float
    gpu_samples: int
    # The finished event's "finished" while the driver holds the record as the event it came
    # from (the observers see it); the store drops it: never on disk.
    type: str
