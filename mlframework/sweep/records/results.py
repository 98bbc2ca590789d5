"""What a sweep leaves on disk: ``RESULTS/<sweep-id>/``.

* ``sweep.json``   -- the sweep: id, project, task, grid, start/end, counts, status
* ``trials.jsonl`` -- one full record per finished trial (parameters, status,
  host, GPU, duration, exit code, command line, metrics and their history),
  appended as each trial finishes and fsynced before its event is acknowledged, so nothing is lost on a crash
* ``results.csv``  -- one row per trial: ``trial, status, host, duration_s``,
  one column per parameter, one per final metric; a sweep with several objectives
  adds ``pareto_rank`` (1: on the Pareto front, :mod:`~mlframework.sweep.records.pareto`)
* ``logs/<trial>.log`` -- everything the trial printed, as it arrived (every attempt's)
* ``dispatched.log`` -- how far in the grid trials were sent (``--resume`` goes on from there)
* ``attempts.jsonl`` -- the full record of each failed attempt that was retried
  (``--retries``); the trial's final record lists them under ``attempts``

A trial is recorded once: a second ``finished`` event for the same trial (a
duplicate delivery) is ignored.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

from mlframework.sweep.records.objectives import Constraint, Objective, constraints_from_meta, objectives_from_meta
from mlframework.sweep.records.pareto import pareto_ranks
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.wire.protocol import FinishedEvent
from mlframework.system.fileio import atomic_open
from mlframework.system.fileio import write_text_atomic as _atomic_write

FIXED_COLUMNS = ["trial", "status", "host", "duration_s"]
PARETO_COLUMN = "pareto_rank"  # with several objectives: 1 on the front, 2 the front of the rest, ...; empty: none


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value)


def _without_type(record: Mapping[str, Any]) -> TrialRecord:
    """The record as written: without the ``type`` of the event it came from."""
    return cast(TrialRecord, {key: value for key, value in record.items() if key != "type"})


class ResultsStore:
    """Writes one sweep's directory as events arrive; reopened to resume a sweep."""

    def __init__(self, directory: Path, parameter_names: Sequence[str], csv_interval: float = 1.0) -> None:
        self.directory = directory
        self.parameter_names = list(parameter_names)
        self.records: dict[str, TrialRecord] = {}
        self.attempts: dict[str, list[TrialRecord]] = {}  # failed attempts that were retried, per trial
        self._metric_names: list[str] = []
        self.objectives: tuple[Objective, ...] = ()  # from sweep.json (write_sweep): several add pareto_rank
        self.constraints: tuple[Constraint, ...] = ()
        self._logs: dict[str, IO[str]] = {}
        self._csv_interval = csv_interval
        self._csv_written_at = self._csv_started_at = 0.0
        self._csv_stale = False
        (directory / "logs").mkdir(parents=True, exist_ok=True)
        self._load_existing()
        self.recorded_before = len(self.records)  # recorded by an earlier driver (a resumed sweep)
        self._trials_file: IO[str] = open(directory / "trials.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._attempts_file: IO[str] | None = None
        self._unsynced = self._attempts_unsynced = False
        self._dispatch_log: IO[str] | None = None

    @classmethod
    def create(
        cls, root: str | os.PathLike[str], sweep: Mapping[str, Any], parameter_names: Sequence[str]
    ) -> ResultsStore:
        """Make ``root/<sweep id>/`` and write its ``sweep.json``."""
        directory = Path(root) / str(sweep["id"])
        directory.mkdir(parents=True, exist_ok=False)
        store = cls(directory, parameter_names)
        store.write_sweep(sweep)
        return store

    @property
    def trials_path(self) -> Path:
        return self.directory / "trials.jsonl"

    @property
    def csv_path(self) -> Path:
        return self.directory / "results.csv"

    def log_path(self, trial: str) -> Path:
        return self.directory / "logs" / f"{trial}.log"

    @staticmethod
    def read_jsonl(path: Path) -> Iterable[TrialRecord]:
        """The records of a ``trials.jsonl`` or ``attempts.jsonl`` (none when it is missing), in file order."""
        if not path.exists():
            return
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by a crash: that trial is simply not recorded
                    continue
                if isinstance(record, dict) and "trial" in record:
                    yield cast(TrialRecord, record)

    def _load_existing(self) -> None:
        for record in self.read_jsonl(self.trials_path):
            self._remember(record)
        for attempt in self.read_jsonl(self.directory / "attempts.jsonl"):
            self.attempts.setdefault(str(attempt["trial"]), []).append(attempt)

    def _remember(self, record: TrialRecord) -> None:
        self.records.setdefault(record["trial"], record)
        for name in record.get("metrics") or {}:
            if name not in self._metric_names and name not in self.parameter_names and name not in FIXED_COLUMNS:
                self._metric_names.append(name)

    def write_sweep(self, sweep: Mapping[str, Any]) -> None:
        """(Re)write ``sweep.json`` (its objectives and constraints decide the csv's ``pareto_rank``)."""
        self.objectives = objectives_from_meta(sweep)
        self.constraints = constraints_from_meta(sweep)
        _atomic_write(self.directory / "sweep.json", json.dumps(dict(sweep), indent=2, default=str) + "\n")

    def append_output(self, trial: str, chunks: Iterable[Sequence[str]]) -> None:
        """Append streamed output (``[stream, text]`` chunks, text = lines joined by newlines) to the trial's log."""
        handle = self._logs.get(trial)
        if handle is None:
            handle = self._logs[trial] = open(self.log_path(trial), "a", encoding="utf-8")  # noqa: SIM115
        parts = []
        for stream, text in chunks:
            if stream == "stderr":
                parts.append("".join(f"[stderr] {line}\n" for line in text.split("\n")))
            else:
                parts.append(f"{text}\n")
        handle.write("".join(parts))
        handle.flush()

    def record(self, record: TrialRecord) -> bool:
        """Record a finished trial; False (and nothing written) when it was recorded already."""
        trial = str(record["trial"])
        if trial in self.records:
            return False
        record = _without_type(record)
        self._trials_file.write(json.dumps(record, default=str) + "\n")
        self._trials_file.flush()
        self._unsynced = True
        handle = self._logs.pop(trial, None)
        if handle is not None:
            handle.close()
        self._remember(record)
        self._csv_stale = True
        if time.monotonic() - self._csv_written_at >= self._csv_interval:
            self.write_csv()
            # A big sweep's rewrite takes longer: keep it under about 5% of the driver's time.
            self._csv_interval = max(self._csv_interval, 20 * (time.monotonic() - self._csv_started_at))
        return True

    def note_dispatched(self, next_index: int) -> None:
        """Remember that every grid index below ``next_index`` was sent (for ``--resume``).

        An append to ``dispatched.log``, not a rewrite of sweep.json: renaming over a
        file costs a flush on ext4, tens of milliseconds each time a batch is sent.
        """
        if self._dispatch_log is None:
            self._dispatch_log = open(self.directory / "dispatched.log", "a", encoding="utf-8")  # noqa: SIM115
        self._dispatch_log.write(f"{next_index}\n")
        self._dispatch_log.flush()

    def dispatched(self) -> int:
        """The ``next_index`` last noted (0 when nothing was sent)."""
        try:
            lines = (self.directory / "dispatched.log").read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return 0
        numbers = [int(line) for line in lines if line.isdigit()]
        return max(numbers, default=0)

    def sync(self) -> None:
        """fsync the records written since the last call: they survive a crash of the machine too."""
        if self._unsynced:
            os.fsync(self._trials_file.fileno())
            self._unsynced = False
        if self._attempts_unsynced and self._attempts_file is not None:
            os.fsync(self._attempts_file.fileno())
            self._attempts_unsynced = False

    def record_attempt(self, record: FinishedEvent) -> None:
        """Keep a failed attempt (its finished event) being retried (``attempts.jsonl``; durable after :meth:`sync`)."""
        attempt = _without_type(record)
        if self._attempts_file is None:
            self._attempts_file = open(self.directory / "attempts.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._attempts_file.write(json.dumps(attempt, default=str) + "\n")
        self._attempts_file.flush()
        self._attempts_unsynced = True
        self.attempts.setdefault(str(attempt["trial"]), []).append(attempt)

    def write_csv(self) -> None:
        """Rewrite ``results.csv`` from every record so far, in trial order."""
        self._csv_started_at = time.monotonic()
        columns = FIXED_COLUMNS + self.parameter_names + self._metric_names
        ranks: dict[str, int] | None = None
        if len(self.objectives) > 1:
            columns = [*columns, PARETO_COLUMN]
            ranks = pareto_ranks(list(self.records.values()), self.objectives, self.constraints)
        with atomic_open(self.csv_path, newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for record in sorted(self.records.values(), key=lambda r: (r.get("index", 0), r["trial"])):
                params = record.get("params") or {}
                metrics = record.get("metrics") or {}
                row: list[Any] = [record["trial"], record.get("status"), record.get("host"), record.get("duration_s")]
                row += [params.get(name) for name in self.parameter_names]
                row += [metrics.get(name) for name in self._metric_names]
                row += [ranks.get(record["trial"])] if ranks is not None else []
                writer.writerow([_cell(value) for value in row])
        self._csv_written_at = time.monotonic()
        self._csv_stale = False

    def close(self) -> None:
        """Flush everything; results.csv is complete afterwards."""
        self.sync()
        if self._csv_stale or not self.csv_path.exists():
            self.write_csv()
        for handle in self._logs.values():
            handle.close()
        self._logs.clear()
        self._trials_file.close()
        for optional in (self._attempts_file, self._dispatch_log):
            if optional is not None:
                optional.close()
