"""Recovery: retries, --max-starts, leases and lost or returned trials, decided without a broker.

The driver's loop (:mod:`mlframework.sweep.driver.loop`) does the talking (it revokes,
asks the workers what they run, sends again); :class:`Recovery` keeps what it
needs to remember between events and says what to do:

* a failed attempt is sent again, on another worker when there is one, until ``--retries`` are spent;
* a trial started more than ``--max-starts`` times without finishing (it killed its worker each time)
  is recorded FAILURE and not sent again;
* a trial whose message a worker acknowledged early (a lease, sweep/trials/lease.py) and that two checks in
  a row find running nowhere is sent again;
* a batch a lost worker gave back, and a trial sent before the driver stopped that no queue holds
  and no worker runs, are sent again.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, cast

from mlframework.statuses import SUCCESS
from mlframework.sweep.records.record import AttemptSummary, TrialRecord
from mlframework.sweep.wire.protocol import LeasedEvent, StartedEvent, TrialRef, message_trials

# How often, at most, the driver asks the workers whether they still run the leased trials.
LEASE_CHECK_INTERVAL = 30.0
# How often a resumed sweep checks that the trials it waits for are still somewhere.
LOST_CHECK_INTERVAL = 30.0


class Start(enum.Enum):
    """What a ``started`` event means."""

    REPEAT = "repeat"  # the same event again (redelivered after a reconnect): not another start
    RUNNING = "running"  # a start to show
    GIVE_UP = "give_up"  # started once too often without finishing: record FAILURE, stop it


class Finish(enum.Enum):
    """What to do with a ``finished`` event."""

    RECORDED_ALREADY = "recorded_already"  # the trial has its record: ignore
    ATTEMPT_ALREADY = "attempt_already"  # that attempt's result came before: ignore
    RETRY = "retry"  # keep the attempt, send the trial again
    RECORD = "record"  # the trial's final record


@dataclass
class Lease:
    """A trial whose message its worker acknowledged early."""

    trial: str
    index: int
    attempt: int
    worker: str
    lease_s: float
    misses: int = 0  # checks in a row that found it running nowhere


class Recovery:
    """What the driver remembers to decide retries, max-starts, leases and returned batches."""

    def __init__(self, retries: int = 0, max_starts: int = 3) -> None:
        self.retries = retries  # re-runs of a failed trial
        self.max_starts = max_starts  # starts of an attempt without a result before it is FAILURE
        self.starts: dict[tuple[str, int], int] = {}  # starts of each attempt of each trial
        self._start_events: set[tuple[Any, ...]] = set()
        self.leases: dict[str, Lease] = {}
        self.returned: set[str] = set()  # batches a lost worker gave back (their trials were sent again)
        self.next_lease_check = 0.0  # time.monotonic() of the next lease check

    # -- starts and results -------------------------------------------------------

    def started(self, event: StartedEvent, recorded: bool) -> Start:
        """Count a start of ``event``'s attempt; ``recorded``: the trial has a record already."""
        trial, attempt = event["trial"], event["attempt"]
        start = (trial, attempt, event.get("worker"), event.get("pid"), event.get("time"))
        if start in self._start_events:
            return Start.REPEAT
        self._start_events.add(start)
        key = (trial, attempt)
        self.starts[key] = self.starts.get(key, 0) + 1
        if self.starts[key] > self.max_starts and not recorded:
            return Start.GIVE_UP
        return Start.RUNNING

    def give_up_reason(self, trial: str, attempt: int) -> str:
        """The error recorded for a trial given up after --max-starts."""
        deaths = self.starts.get((trial, attempt), 0) - 1
        return (
            f"its worker died {deaths} times while running it (killed, or out of memory?); "
            f"given up after {self.max_starts} starts"
        )

    def finished(self, recorded: bool, earlier: Collection[int], attempt: int, status: str, final: bool) -> Finish:
        """What a result means: ``earlier`` are the attempts recorded before, ``final`` allows no retry."""
        if recorded:
            return Finish.RECORDED_ALREADY
        if attempt in earlier:
            return Finish.ATTEMPT_ALREADY
        if not final and status != SUCCESS and attempt <= self.retries:
            return Finish.RETRY
        return Finish.RECORD

    # -- returned batches, lost trials ------------------------------------------------

    def first_return(self, batch: str) -> bool:
        """Whether batch ``batch`` comes back for the first time (a redelivered notice changes nothing)."""
        if batch in self.returned:
            return False
        self.returned.add(batch)
        return True

    # -- leases --------------------------------------------------------------------

    def leased(self, event: LeasedEvent) -> None:
        """A worker acknowledged ``event``'s trial early: from now on the driver watches it."""
        self.leases[event["trial"]] = Lease(
            event["trial"],
            event["index"],
            event["attempt"],
            str(event.get("worker") or ""),
            float(event.get("lease_s") or 0),
        )

    def lease_check_due(self, recorded: Collection[str], now: float) -> bool:
        """Forget the leases of recorded trials; whether it is time to look for the others."""
        for trial in [t for t in self.leases if t in recorded]:
            del self.leases[trial]
        return bool(self.leases) and now >= self.next_lease_check

    def lost_leases(self, running: Collection[str], now: float) -> list[Lease]:
        """The leased trials to send again, given the trials the workers say they run.

        One missed reply is a slow worker, not a dead one: a trial is lost when two
        checks in a row find it nowhere. The next check comes after a quarter of
        the shortest lease (1 s at least, LEASE_CHECK_INTERVAL at most).
        """
        shortest = min(lease.lease_s or LEASE_CHECK_INTERVAL for lease in self.leases.values())
        self.next_lease_check = now + min(LEASE_CHECK_INTERVAL, max(1.0, shortest / 4))
        lost = []
        for trial, lease in list(self.leases.items()):
            if trial in running:
                lease.misses = 0
                continue
            lease.misses += 1
            if lease.misses >= 2:
                del self.leases[trial]
                lost.append(lease)
        return lost


def unaccounted(awaiting: Collection[str], seen: Collection[str], recorded: Collection[str]) -> list[str]:
    """Trials sent before this session that sent no event since and have no record, in order."""
    return sorted(set(awaiting) - set(seen) - set(recorded))


def next_attempt(earlier: Collection[Any]) -> int:
    """The attempt number a trial sent again gets, after the ``earlier`` failed attempts recorded."""
    return len(earlier) + 1


def to_send_again(trials: list[TrialRef], recorded: Collection[str]) -> list[TrialRef]:
    """The trials of a returned batch that have no record."""
    return [t for t in trials if str(t["id"]) not in recorded]


def trials_held(listings: Mapping[str, list[dict[str, Any]]] | None, sweep_id: str) -> set[str]:
    """The trial ids of sweep ``sweep_id`` in the task lists of ``inspect().active()`` (or ``reserved()``)."""
    return {
        str(trial["id"])
        for tasks in (listings or {}).values()
        for task in tasks
        for trial in message_trials(task.get("kwargs"))
        if trial["sweep"] == sweep_id
    }


def attempt_summary(record: TrialRecord) -> AttemptSummary:
    """What a trial's record keeps of each earlier attempt (--retries): the keys of AttemptSummary, None if absent."""
    keys = (
        "attempt",
        "status",
        "host",
        "gpu",
        "worker",
        "exit_code",
        "error",
        "stderr_tail",
        "stdout_tail",
        "duration_s",
        "started_at",
        "finished_at",
        "metrics",
    )
    return cast(AttemptSummary, {key: record.get(key) for key in keys})
