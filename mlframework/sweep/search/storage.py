"""Where a search's Optuna study lives: its journal file, written and read by the sweep's driver alone.

``--resume`` continues a study from its journal (``study.journal`` in the
sweep's directory, Optuna's own journal format, readable by
``optuna.storages.JournalFileBackend``). One driver per sweep
(sweep/driver/lock.py) is its only reader and writer, which lets two of
Optuna's per-call costs go, each O(trials) or a disk round trip a call:

- Optuna's file backend takes a lock file and fsyncs at every append (a trial
  of 52 reports is some 65 appends), and reopens and re-reads the file's tail
  after every write and before every read. :class:`DriverJournal` reads the
  file once, keeps it open for appending, and hands back what it appended from
  memory; :meth:`DriverJournal.sync` makes it durable where the driver says.
- ``Study.ask`` first scans every trial of the study for an enqueued (WAITING)
  one. :class:`DriverStorage` answers that scan at once while the study has
  none; a sweep never enqueues trials, so it never has.

Measured at 10,000 trials by ``bench/search_micro.py`` (README, search overhead).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState

from mlframework.exceptions import SweepError

log = logging.getLogger(__name__)


class DriverJournal(BaseJournalBackend):
    """A journal file with one writer: read once when opened, appended to with one write a call, fsynced on demand.

    A killed driver loses nothing it appended (the page cache keeps it); a power
    cut can lose what came after the last :meth:`sync`. A last line cut short
    (a crash mid-write) is dropped when the file is opened, with a warning, so
    that the next append does not glue onto it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._first = 0  # the log number of self._unread[0]
        self._unread: list[dict[str, Any]] = self._load()
        # Unbuffered: each append is one write(2) of whole lines.
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (open for the driver's lifetime; close())

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            log.warning(
                "%s: dropping its last %d bytes, a line cut short (the driver was stopped mid-write)",
                self.path,
                len(data) - whole,
            )
            os.truncate(self.path, whole)
        logs = []
        for number, line in enumerate(data[:whole].splitlines(), 1):
            try:
                logs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SweepError(
                    f"{self.path}:{number}: not a journal line ({exc.msg}); the study's file is damaged"
                ) from None
        return logs

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        """The logs from number ``log_number_from`` on that this journal has not handed out yet.

        JournalStorage asks for each log once, in order; what it was handed is
        dropped here. Asked again for an earlier log, the file is read.
        """
        if log_number_from < self._first:
            return self._load()[log_number_from:]
        logs = self._unread[log_number_from - self._first :]
        self._first += len(self._unread)
        self._unread = []
        return logs

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``logs`` to the file in one write; read back as the file gives them (JSON's lists, str keys)."""
        lines = [json.dumps(entry, separators=(",", ":")) for entry in logs]
        pending = memoryview(("\n".join(lines) + "\n").encode("utf-8"))
        while pending:  # an unbuffered write may write less than asked (a signal mid-write)
            pending = pending[self._file.write(pending) or 0 :]
        self._unread.extend(json.loads(line) for line in lines)

    def sync(self) -> None:
        """Make everything appended so far durable (fsync)."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (appending after this raises)."""
        self._file.close()


class DriverStorage(JournalStorage):
    """Optuna's JournalStorage over a :class:`DriverJournal`, whose scan for enqueued trials is free while none is.

    ``Study.ask`` calls ``get_all_trials(states=(WAITING,))`` first, a pass over
    every trial of the study (6 of 32 s at 10,000 trials). Trials are WAITING
    only when enqueued (created from a WAITING template); this storage is the
    journal's only writer, so it knows whether any ever was.
    """

    def __init__(self, journal: DriverJournal) -> None:
        super().__init__(journal)
        self.journal = journal
        self._enqueued = any(
            super(DriverStorage, self).get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
            for study in self.get_all_studies()
        )

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None and template_trial.state == TrialState.WAITING:
            self._enqueued = True
        return super().create_new_trial(study_id, template_trial)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if not self._enqueued and isinstance(states, tuple) and states == (TrialState.WAITING,):
            return []
        return super().get_all_trials(study_id, deepcopy, states)


def open_study_storage(path: Path) -> DriverStorage:
    """The study storage of the journal at ``path`` (created empty if missing)."""
    return DriverStorage(DriverJournal(path))
