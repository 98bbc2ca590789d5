"""A search's trial source: the driver's loop asks it for trials and tells it results, as it does a grid's.

The loop does for a search what it does for a grid (events, records, retries,
max-starts, leases, reconnection); :class:`SearchTrials` decides how many
trials may be in flight (one per worker slot), where they come from (the
Optuna study of :mod:`mlframework.sweep.search.study`), what is told back, and which
running trials are pruned (stopped through :mod:`mlframework.sweep.wire.control`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlframework.exceptions import ConfigError
from mlframework.sweep.records.objectives import Constraint, Objective
from mlframework.sweep.records.ranking import guess_mode
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.records.results import ResultsStore
from mlframework.sweep.search.plan import SearchPlan
from mlframework.sweep.search.study import SearchSource
from mlframework.sweep.wire.ids import trial_id

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


class SearchTrials:
    """The trial source of a search (see ``dispatch.TrialSource``): one trial per free worker slot.

    A search's trials go one per message: asking ahead more than the free slots
    would sample without the results of the trials running now.
    """

    batched = False

    def __init__(self, app: Any, sweep_id: str, store: ResultsStore, source: SearchSource, total: int) -> None:
        self.app = app
        self.sweep_id = sweep_id
        self.store = store
        self.source = source
        self.total = total  # --trials: trial ids are numbered for this many
        self.next_index = 0
        self.given_slots = source.settings.parallel
        self.slots = self.given_slots or 0
        self.next_slots_check = 0.0
        self.stopping: set[str] = set()

    @property
    def exhausted(self) -> bool:
        return self.source.exhausted

    def take(self) -> tuple[int, dict[str, Any]] | None:
        """Ask the study for a trial."""
        asked = self.source.ask()
        if asked is not None:
            self.next_index = asked[0] + 1
        return asked

    def params(self, index: int) -> dict[str, Any]:
        return self.source.params(index)

    def _check_slots(self) -> None:
        if self.given_slots or time.monotonic() < self.next_slots_check:
            return
        found = worker_slots(self.app)
        self.next_slots_check = time.monotonic() + (_SLOTS_RECHECK if found else 2.0)
        if found != self.slots:
            log.info("search: %d worker slot(s), %d trial(s) in flight", found, found)
            self.slots = found

    def room(self, outstanding: int) -> int:
        """Trials to ask for now: one per slot not running a trial (a pruned trial's slot is free at once)."""
        self._check_slots()
        stopping = sum(1 for trial in self.stopping if trial not in self.store.records)
        return max(0, max(self.slots, 1) - outstanding + stopping)

    def done(self, recorded: int) -> bool:
        """Every trial asked is recorded and no more will be asked."""
        return self.source.exhausted and recorded >= self.source.asked

    def report(self, trial: str, index: int, history: list[dict[str, Any]]) -> None:
        """Intermediate values of a running trial: prune it when the pruner says so."""
        if trial in self.store.records or trial in self.stopping or not self.source.report(index, history):
            return
        from mlframework.sweep.wire.control import stop_trials

        self.stopping.add(trial)
        log.info("search: pruning %s", trial)
        self.store.append_output(trial, [["stdout", "[mlframework] pruned: stopping the trial"]])
        stop_trials(self.app, self.sweep_id, [trial], "pruned", self.source.settings.grace_s)

    def tell(self, index: int, record: TrialRecord) -> str:
        """Tell the study a trial's final record; the status to record."""
        status = self.source.tell(index, record)
        if status == "PRUNED":
            record["error"] = f"pruned by the {self.source.settings.prune} pruner ({record.get('error') or 'stopped'})"
        return status

    def close(self) -> None:
        self.source.close()

    def untold(self, records: Mapping[str, TrialRecord]) -> list[int]:
        """Trials asked before whose result the study never heard: told now when recorded.

        Returns the others: still queued or running somewhere, or lost.
        """
        pending = []
        for number in self.source.untold():
            trial = trial_id(number, self.total)
            if trial in records:
                self.source.tell(number, records[trial])  # recorded just before a crash
            else:
                pending.append(number)
        return pending


def open_search(
    app: Any,
    plan: SearchPlan,
    metric: str | None,
    mode: str | None,
    sweep_id: str,
    store: ResultsStore,
    total: int,
    objectives: Sequence[Objective] = (),
    constraints: Sequence[Constraint] = (),
) -> SearchTrials:
    """Open (or reopen) the study of ``plan`` in the sweep's directory (``store``): the search's trial source.

    Two ``objectives`` or more make a multi-objective study (its result a Pareto front).
    """
    if not metric:
        raise ConfigError("a --search needs --metric NAME: the metric it optimises")
    mode = mode or guess_mode(metric)
    source = SearchSource(plan.space, plan.settings, store.directory, sweep_id, metric, mode, objectives, constraints)
    return SearchTrials(app, sweep_id, store, source, total)
