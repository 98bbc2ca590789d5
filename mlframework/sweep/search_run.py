"""A search inside the driver loop: the hooks ``_SweepRun`` calls when its sweep samples a space.

The driver keeps doing what it does for a grid (events, records, retries,
max-starts, leases, reconnection); these hooks decide how many trials may be in
flight, where they come from (the study), what is told back, and which running
trials are pruned (stopped through :mod:`mlframework.sweep.control`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mlframework.exceptions import ConfigError
from mlframework.sweep.search import SearchSource
from mlframework.sweep.search_dispatch import SearchDispatcher

log = logging.getLogger(__name__)

_SLOTS_RECHECK = 30.0  # seconds between looks for more workers when the slots were found, not given


def worker_slots(app: Any, timeout: float = 1.0) -> int:
    """How many trials the workers can run at once (the sum of their pools' concurrency); 0 if none answered."""
    stats = app.control.inspect(timeout=timeout).stats() or {}
    slots = 0
    for info in stats.values():
        pool = (info or {}).get("pool") or {}
        slots += int(pool.get("max-concurrency") or 1)
    return slots


class SearchHooks:
    """Binds a :class:`SearchSource` and its dispatcher to one driver session."""

    def __init__(self, run: Any, source: SearchSource, dispatcher: SearchDispatcher) -> None:
        self.run = run
        self.source = source
        self.dispatcher = dispatcher
        self.given_slots = source.settings.parallel
        self.slots = self.given_slots or 0
        self.next_slots_check = 0.0
        self.stopping: set[str] = set()

    def _check_slots(self) -> None:
        if self.given_slots or time.monotonic() < self.next_slots_check:
            return
        found = worker_slots(self.run.app)
        self.next_slots_check = time.monotonic() + (_SLOTS_RECHECK if found else 2.0)
        if found != self.slots:
            log.info("search: %d worker slot(s), %d trial(s) in flight", found, found)
            self.slots = found

    def room(self, outstanding: int) -> int:
        """Trials to ask for now: one per slot not running a trial (a pruned trial's slot is free at once)."""
        self._check_slots()
        stopping = sum(1 for trial in self.stopping if trial not in self.run.store.records)
        return max(0, max(self.slots, 1) - outstanding + stopping)

    def done(self) -> bool:
        """Every trial asked is recorded and no more will be asked."""
        return self.source.exhausted and len(self.run.store.records) >= self.source.asked

    def params(self, index: int) -> dict[str, Any]:
        return self.source.params(index)

    def report(self, trial: str, index: int, history: list[dict[str, Any]]) -> None:
        """Intermediate values of a running trial: prune it when the pruner says so."""
        if trial in self.stopping or not self.source.report(index, history):
            return
        from mlframework.sweep.control import stop_trials

        self.stopping.add(trial)
        log.info("search: pruning %s", trial)
        self.run.store.append_output(trial, [["stdout", "[mlframework] pruned: stopping the trial"]])
        stop_trials(self.run.app, self.run.sweep_id, [trial], "pruned", self.source.settings.grace_s)

    def tell(self, index: int, record: dict[str, Any]) -> str:
        """Tell the study a trial's final record; the status to record."""
        status = self.source.tell(index, record)
        if status == "PRUNED":
            record["error"] = f"pruned by the {self.source.settings.prune} pruner ({record.get('error') or 'stopped'})"
        return status


def start_search(run: Any, window: int, epoch: int = 0) -> SearchHooks:
    """Open (or reopen) the sweep's study and give the driver its dispatcher; returns the hooks."""
    spec = run.spec
    if not spec.metric:
        raise ConfigError("a --search needs --metric NAME: the metric it optimises")
    mode = spec.mode or _guess_mode(spec.metric)
    source = SearchSource(spec.grid, spec.search, run.store.directory, run.sweep_id, spec.metric, mode)
    from mlframework.sweep.driver import trial_controls

    controls = trial_controls(spec, run.sweep_id)
    dispatcher = SearchDispatcher(run.app, spec.task, run.sweep_id, run.total, source, controls, epoch)
    run.dispatcher = dispatcher
    hooks = SearchHooks(run, source, dispatcher)
    records = run.store.records
    # A record written just before a crash, whose result the study never heard: tell it now.
    for number in source.untold():
        trial = dispatcher.trial_id(number)
        if trial in records:
            source.tell(number, records[trial])
        elif run.resend_in_flight:
            dispatcher.resend(number, len(run.store.attempts.get(trial, [])) + 1)
            dispatcher.sent += 1
        else:
            run.awaiting.add(trial)  # still queued or running somewhere: awaited (resend_lost checks)
    return hooks


def _guess_mode(metric: str) -> str:
    from mlframework.sweep.driver import guess_mode

    return guess_mode(metric)
