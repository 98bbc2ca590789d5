"""A trial's record as a typed dict: one line of ``trials.jsonl`` (or ``attempts.jsonl``), as every module passes it.

The worker builds the bulk of it (:class:`~mlframework.sweep.wire.protocol.FinishedEvent`,
whose fields past the trial's identity are :class:`~mlframework.sweep.wire.protocol.TrialOutcome`);
the driver adds the earlier attempts and the project's revision, a search may
set the status (PRUNED), and :class:`~mlframework.sweep.records.results.ResultsStore`
writes it as JSON. Read back, a record holds what its writer put there: every
field but ``trial`` is optional (older versions wrote fewer), so readers use
``.get()``. These types describe the JSON; they change nothing on disk.
"""

from __future__ import annotations

from typing import TypedDict

from mlframework.sweep.wire.protocol import Metrics, TrialOutcome


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


#: GPU use as the worker records it (sweep/trials/gpu_usage.py), by what it measures: (mean key, peak key).
GPU_USE_FIELDS = {
    "gpu_util": ("gpu_util_mean", "gpu_util_peak"),  # percent
    "gpu_memory_mib": ("gpu_memory_mean_mib", "gpu_memory_peak_mib"),
}


class _RecordBase(TypedDict):
    trial: str  # the trial id, e.g. t0007: every record has it (a line without it is not read back)


class TrialRecord(_RecordBase, TrialOutcome, total=False):
    """One trial's record (see the module docstring); keys as in ``trials.jsonl``."""

    index: int  # its grid index (a search: the study's trial number)
    attempt: int  # 1, then 2, 3, ... for --retries
    status: str  # SUCCESS, FAILURE or PRUNED (mlframework.statuses)
    worker: str  # the Celery node name of the worker that ran it
    message: str  # the task message's id
    attempts: list[AttemptSummary]  # the earlier attempts, on the final record only
    # "finished" while the driver holds the record as the event it came from (observers see it);
    # the store drops it: never on disk.
    type: str


def gpu_use(record: TrialRecord, measure: str) -> dict[str, float]:
    """``{"mean": ..., "peak": ...}`` of one :data:`GPU_USE_FIELDS` measure; empty for a CPU trial."""
    found: dict[str, float] = {}
    for name, key in zip(("mean", "peak"), GPU_USE_FIELDS[measure]):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = float(value)
    return found
