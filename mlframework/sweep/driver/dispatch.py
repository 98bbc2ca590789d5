"""Dispatch: where trials come from (a trial source), how many go per message and how many are in flight.

The driver's loop asks its :class:`TrialSource` for the next trials and tells it
every result; a grid sweep's source is :class:`GridSource` (lazy, in grid
order), a search's is ``SearchTrials`` (:mod:`mlframework.sweep.search.source`).
:class:`Pacing` decides, without a broker, how many trials one message carries
and how many may be sent now; :class:`Dispatcher` sends them as task messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from mlframework.sweep.params.grid import Grid
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.wire import liveness
from mlframework.sweep.wire.app import TRIAL_QUEUE
from mlframework.sweep.wire.ids import task_id, trial_id
from mlframework.sweep.wire.protocol import TrialEntry, TrialRef


class TrialSource(Protocol):
    """What the driver's loop asks for trials and tells results to: a grid, or a search's study."""

    total: int  # trials the sweep runs (ids are numbered for this many)
    next_index: int  # the first index not handed out yet
    batched: bool  # whether several trials may share a message (a search: one per message)

    @property
    def exhausted(self) -> bool:
        """No more trial will be handed out."""

    def take(self) -> tuple[int, dict[str, Any]] | None:
        """The next trial to send (index, parameters); None when there is none."""

    def params(self, index: int) -> dict[str, Any]:
        """Trial ``index``'s parameters (for a retry, or a trial sent again)."""

    def room(self, outstanding: int) -> int | None:
        """How many trials to send now, or None to leave it to :class:`Pacing` (the window and batching)."""

    def done(self, recorded: int) -> bool:
        """Every trial the sweep will run is recorded (``recorded`` records are)."""

    def report(self, trial: str, index: int, history: list[dict[str, Any]]) -> None:
        """Metrics a running trial reported (a search may prune it)."""

    def tell(self, index: int, record: TrialRecord) -> str:
        """A trial's final record; returns the status to record."""

    def close(self) -> None:
        """The sweep's loop is over (a search's study file is closed)."""


class GridSource:
    """The combinations of a grid in grid order, from ``start``, skipping the trials in ``skip``."""

    def __init__(self, grid: Grid, total: int, start: int = 0, skip: Collection[str] = ()) -> None:
        self.grid = grid
        self.total = total
        self.next_index = start
        self.skip = skip  # trials not to send (recorded: a live view of the store)
        self.batched = True
        self._combinations: Iterator[dict[str, Any]] | None = grid.iter_from(start) if start < total else None

    @property
    def exhausted(self) -> bool:
        return self._combinations is None

    def take(self) -> tuple[int, dict[str, Any]] | None:
        while self._combinations is not None:
            try:
                combination = next(self._combinations)
            except StopIteration:
                self._combinations = None
                break
            index = self.next_index
            self.next_index += 1
            if trial_id(index, self.total) not in self.skip:
                return index, combination
        return None

    def params(self, index: int) -> dict[str, Any]:
        return self.grid[index]

    def room(self, outstanding: int) -> int | None:
        return None

    def done(self, recorded: int) -> bool:
        return recorded >= self.total

    def report(self, trial: str, index: int, history: list[dict[str, Any]]) -> None:
        """A grid stops no trial early."""

    def tell(self, index: int, record: TrialRecord) -> str:
        return str(record.get("status"))

    def close(self) -> None:
        return None


class Pacing:
    """How many trials go per message and how many may be in flight: decisions only, no broker.

    Short trials go several to a message (one broker round trip, one pair of
    acks, a few event messages for all of them) so that a batch takes about
    ``BATCH_SECONDS``. Trials whose duration is not known yet go one per
    message, at most ``PROBE_AHEAD`` of them waiting for a worker at once.
    """

    BATCH_SECONDS = 0.25
    PROBE_AHEAD = 8
    # A message carries at most 1/TAIL_SHARE of what is left to send: near the end of the grid
    # batches shrink, so that the last trials spread over every worker.
    TAIL_SHARE = 4

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch  # most trials one message carries (1: one per message)
        self.trial_seconds: float | None = None  # how long a trial takes, as observed (None: not yet)

    def observe(self, seconds: Any) -> None:
        """Follow the trials' duration: slowly towards shorter ones, at once towards much longer ones."""
        if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:
            return
        if self.trial_seconds is None or seconds > 4 * self.trial_seconds:
            self.trial_seconds = float(seconds)
        else:
            self.trial_seconds += 0.2 * (seconds - self.trial_seconds)

    def batch_size(self, unsent: int) -> int:
        """How many trials the next message carries (``unsent``: trials not sent yet); 0 while probing."""
        if self.trial_seconds is None:
            return 0
        if self.max_batch <= 1:
            return 1
        by_time = int(self.BATCH_SECONDS / max(self.trial_seconds, 1e-6))
        return max(1, min(self.max_batch, by_time, unsent // self.TAIL_SHARE))

    def room(self, window: int, outstanding: int, unsent: int, seen: int, sent: int) -> int:
        """How many trials may be sent now: at most ``window`` in flight, whole messages, a few while probing.

        ``seen``: trials that showed any sign of life this session; ``sent``: trials sent this session.
        """
        room = window - outstanding
        size = self.batch_size(unsent)
        if size == 0:  # probing: a few single trials at a time until one has finished
            return min(room, self.PROBE_AHEAD + seen - sent)
        # Wait until a whole message's worth is free, unless the window is smaller than that.
        return room if room >= min(size, window) else 0


def trial_controls(
    sweep_dir: Path,
    trial_timeout: float | None,
    metrics: Collection[str | None] = (),
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What every trial message carries besides its id and parameters (read by protocol.trial_controls).

    ``metrics``: the names the sweep asked for (``--metric``, ``--prune-metric``), which
    the worker reads from the trial's output in any spelling. ``command``: the parameters
    file's command (``FileCommand.to_record()``), which the built-in command task runs.
    """
    controls: dict[str, Any] = {"sweep_dir": str(sweep_dir.resolve())}
    if trial_timeout:
        controls["timeout"] = trial_timeout
    names = list(dict.fromkeys(name for name in metrics if name))
    if names:
        controls["metrics"] = names
    if command is not None:
        controls["command"] = command
    return controls


@dataclass
class Dispatcher:
    """Sends the trials a source hands out as task messages, batched as asked; and single trials again."""

    app: Any
    task: str
    sweep_id: str
    source: TrialSource
    controls: dict[str, Any] = field(default_factory=dict)  # trial_controls()
    epoch: int = 0  # the sweep's live epoch its messages carry (sweep/wire/liveness.py)
    sent: int = 0  # trials sent this session (resent lost ones counted by the caller)
    priority: int | None = None  # the message priority of what is sent now (None: the broker's default)
    last_sent: list[str] = field(default_factory=list)  # ids of the trials the last send() sent

    def _trial(self, index: int, attempt: int) -> TrialRef:
        # A dict literal: this runs once per trial sent, a million times for a big grid.
        trial = {
            "sweep": self.sweep_id,
            "id": trial_id(index, self.source.total),
            "index": index,
            "attempt": attempt,
            **self.controls,  # sweep_dir, timeout, metrics
        }
        return cast(TrialRef, liveness.stamp(trial, self.epoch))

    def _send_task(self, producer: Any, index: int, params: dict[str, Any], attempt: int, avoid: str | None) -> None:
        trial = self._trial(index, attempt)
        if avoid:
            trial["avoid"] = avoid
        self.app.send_task(
            self.task,
            kwargs={"params": params, "trial": trial},
            # What Flower shows; given here because Celery's own repr of the arguments is slow.
            argsrepr="()",
            kwargsrepr=json.dumps({"trial": trial["id"], "params": params}, default=str),
            task_id=task_id(self.sweep_id, trial["id"], attempt),
            queue=TRIAL_QUEUE,
            producer=producer,
            priority=self.priority,
        )

    def _send_batch(self, producer: Any, entries: list[tuple[int, dict[str, Any]]]) -> None:
        if len(entries) == 1:
            self._send_task(producer, entries[0][0], entries[0][1], 1, None)
            return
        batch: list[TrialEntry] = [{"params": params, "trial": self._trial(index, 1)} for index, params in entries]
        first, last = batch[0]["trial"]["id"], batch[-1]["trial"]["id"]
        self.app.send_task(
            self.task,
            kwargs={"batch": batch},
            argsrepr="()",
            kwargsrepr=json.dumps({"trials": f"{first}..{last}", "count": len(batch)}),
            task_id=f"{self.sweep_id}.{first}+{len(batch)}",
            queue=TRIAL_QUEUE,
            producer=producer,
            priority=self.priority,
        )

    def send(self, how_many: int, batch_size: Callable[[int], int] = lambda unsent: 1) -> int:
        """Send up to ``how_many`` more trials of the source; returns how many were sent.

        ``batch_size(unsent)`` says how many trials the next message carries, ``unsent``
        being the number of trials not handed out yet.
        """
        source = self.source
        count = 0
        self.last_sent = []
        pending: list[tuple[int, dict[str, Any]]] = []
        size = batch_size(source.total - source.next_index)
        with self.app.producer_or_acquire() as producer:
            while count < how_many:
                taken = source.take()
                if taken is None:
                    break
                pending.append(taken)
                self.last_sent.append(trial_id(taken[0], source.total))
                count += 1
                if len(pending) >= size:
                    self._send_batch(producer, pending)
                    pending = []
                    size = batch_size(source.total - source.next_index)
            if pending:
                self._send_batch(producer, pending)
        self.sent += count
        return count

    def resend(self, index: int, attempt: int, avoid: str | None = None) -> None:
        """Send one trial again, in a message of its own (a retry, or a lost trial)."""
        with self.app.producer_or_acquire() as producer:
            self._send_task(producer, index, self.source.params(index), attempt, avoid)
