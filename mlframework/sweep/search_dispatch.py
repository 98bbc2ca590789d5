"""Sends the trials of a search: one per free slot, as the study proposes them (the grid has _Dispatcher)."""

from __future__ import annotations

import json
from typing import Any

from mlframework.sweep import liveness
from mlframework.sweep.app import TRIAL_QUEUE
from mlframework.sweep.search import SearchSource


class SearchDispatcher:
    """The driver's dispatcher for a search: same interface as the grid's, trials asked of ``source``.

    A search's trials go one per message: asking ahead more than the free slots
    would sample without the results of the trials running now.
    """

    def __init__(
        self,
        app: Any,
        task: str,
        sweep_id: str,
        total: int,
        source: SearchSource,
        controls: dict[str, Any] | None = None,
        epoch: int = 0,
    ) -> None:
        from mlframework.sweep.driver import task_id, trial_id  # the driver imports this module lazily

        self.app = app
        self.task = task
        self.sweep_id = sweep_id
        self.total = total
        self.source = source
        self._task_id = task_id
        self._trial_id = trial_id
        self.controls = dict(controls or {})  # trial timeout, sweep directory (driver.trial_controls)
        self.epoch = epoch  # the sweep's live epoch (sweep/liveness.py)
        self.sent = 0
        self.next_index = 0

    @property
    def exhausted(self) -> bool:
        return self.source.exhausted

    def trial_id(self, number: int) -> str:
        """The trial id of study trial ``number``."""
        return self._trial_id(number, self.total)

    def params(self, number: int) -> dict[str, Any]:
        return self.source.params(number)

    def _send(self, producer: Any, number: int, attempt: int, avoid: str | None) -> None:
        params = self.source.params(number)
        trial: dict[str, Any] = {"sweep": self.sweep_id, "id": self.trial_id(number), "index": number}
        trial["attempt"] = attempt
        trial.update(self.controls)
        liveness.stamp(trial, self.epoch)
        if avoid:
            trial["avoid"] = avoid
        self.app.send_task(
            self.task,
            kwargs={"params": params, "trial": trial},
            argsrepr="()",
            kwargsrepr=json.dumps({"trial": trial["id"], "params": params}, default=str),
            task_id=self._task_id(self.sweep_id, trial["id"], attempt),
            queue=TRIAL_QUEUE,
            producer=producer,
        )

    def send(self, how_many: int, batch_size: Any = None) -> int:
        """Ask the study for up to ``how_many`` trials and send them; returns how many were sent."""
        count = 0
        with self.app.producer_or_acquire() as producer:
            while count < how_many:
                asked = self.source.ask()
                if asked is None:
                    break
                self._send(producer, asked[0], 1, None)
                self.next_index = asked[0] + 1
                count += 1
        self.sent += count
        return count

    def resend(self, number: int, attempt: int, avoid: str | None = None) -> None:
        """Send one trial again (a retry, or a trial lost while the driver was away), same parameters."""
        with self.app.producer_or_acquire() as producer:
            self._send(producer, number, attempt, avoid)
