"""Metrics from the log files scripts already write: TensorBoard event files and CSV logs, read as they grow.

A script that logs with ``torch.utils.tensorboard.SummaryWriter``, Lightning's default
TensorBoard or ``CSVLogger`` logger, Keras' TensorBoard callback or the Hugging Face
Trainer (TensorBoard when it is installed) needs no change: the files it writes under
the trial's directory are found and read while it runs, and each step becomes a record
of the same shape ``mlframework.metrics.log`` writes (``{"time", "step", "values"}``).

* TensorBoard: files named ``events.out.tfevents.*``, read with TensorBoard's own
  loader (the ``tensorboard`` package: ``pip install 'mlframework[tensorboard]'``;
  without it the files are named once in the log and skipped). Scalars only; a tag
  (``val/loss``) is the metric's name.
* CSV: files named ``metrics.csv`` (Lightning's ``CSVLogger``): one row a record,
  ``step`` (else ``epoch``, else the row's place) the record's step, every other non-empty
  number a metric.
  Lightning rewrites the whole file as columns appear, so it is read again whole and
  only the rows not yet seen are handed on.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_FILE_PREFIX = "events.out.tfevents."
CSV_LOG_NAME = "metrics.csv"
STEP_COLUMNS = ("step", "epoch")  # the first one a row has is its step; neither is a metric
_MAX_DEPTH = 6  # lightning_logs/version_0/ or runs/<date>_<host>/ sit two levels down; checkpoints deeper are skipped

MetricRecord = dict[str, Any]  # {"time": float, "step": int | None, "values": {name: number}}


class MetricFiles:
    """The TensorBoard event files and CSV logs under ``directory``, each read on from where the last poll stopped."""

    def __init__(self, directory: Path, look_every: float = 1.0) -> None:
        self.directory = directory
        self.look_every = look_every  # seconds between looks for new files (the known ones are read every poll)
        self._next_look = 0.0
        self._event_files: dict[Path, _EventFile] = {}
        self._csv_files: dict[Path, _CsvLog] = {}
        self._warned_no_tensorboard = False

    def poll(self, look: bool = False) -> list[MetricRecord]:
        """The records written since the last poll, oldest first within each file.

        New files are looked for at most every :attr:`look_every` seconds (a walk of the
        directory), or now with ``look``; the files already found are read every time.
        """
        now = time.monotonic()
        if look or now >= self._next_look:
            self._next_look = now + self.look_every
            self._find_files()
        records: list[MetricRecord] = []
        for event_file in self._event_files.values():
            records.extend(event_file.read_new())
        for csv_log in self._csv_files.values():
            records.extend(csv_log.read_new())
        return records

    def _find_files(self) -> None:
        for path in _log_files(self.directory):
            if path.name.startswith(EVENT_FILE_PREFIX):
                if path not in self._event_files:
                    reader = _EventFile.open(path)
                    if reader is None:
                        self._say_no_tensorboard(path)
                        continue
                    self._event_files[path] = reader
            elif path not in self._csv_files:
                self._csv_files[path] = _CsvLog(path)

    def _say_no_tensorboard(self, path: Path) -> None:
        if not self._warned_no_tensorboard:
            self._warned_no_tensorboard = True
            log.warning(
                "%s: TensorBoard event files are not read without the tensorboard package "
                "(pip install 'mlframework[tensorboard]')",
                path,
            )


def _log_files(directory: Path) -> Iterator[Path]:
    """Event files and CSV logs under ``directory``, at most ``_MAX_DEPTH`` levels down, hidden folders skipped."""
    top = str(directory)
    depth0 = top.rstrip(os.sep).count(os.sep)
    for root, folders, files in os.walk(top):
        if root.count(os.sep) - depth0 >= _MAX_DEPTH:
            folders[:] = []
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith(EVENT_FILE_PREFIX) or name == CSV_LOG_NAME:
                yield Path(root) / name


def _number(value: Any) -> float | int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and isinstance(value, int) else number


class _EventFile:
    """One TensorBoard event file, read on by TensorBoard's loader (it keeps its place, and waits out a torn record)."""

    def __init__(self, loader: Any, make_ndarray: Any) -> None:
        self._loader = loader
        self._make_ndarray = make_ndarray

    @classmethod
    def open(cls, path: Path) -> _EventFile | None:
        try:
            from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
            from tensorboard.util.tensor_util import make_ndarray
        except ImportError:
            return None
        return cls(EventFileLoader(str(path)), make_ndarray)

    def read_new(self) -> list[MetricRecord]:
        records: list[MetricRecord] = []
        for event in self._loader.Load():
            if not event.HasField("summary"):
                continue
            values: dict[str, float | int] = {}
            for value in event.summary.value:
                number = self._scalar(value)
                if number is not None:
                    values[value.tag] = number
            if not values:
                continue
            last = records[-1] if records else None
            if last is not None and last["step"] == event.step:
                last["values"].update(values)  # one record per step, as metrics.log(step=..., a=..., b=...) writes
            else:
                records.append({"time": event.wall_time, "step": int(event.step), "values": values})
        return records

    def _scalar(self, value: Any) -> float | int | None:
        if value.HasField("tensor"):
            try:
                array = self._make_ndarray(value.tensor)
            except Exception:  # a tensor TensorBoard itself cannot decode: not a scalar of ours
                return None
            return _number(array.item()) if array.size == 1 else None
        if value.HasField("simple_value"):
            return _number(value.simple_value)
        return None


class _CsvLog:
    """One CSV log (Lightning's ``metrics.csv``): read whole when it changed, its new rows handed on."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen_rows = 0
        self._stamp: tuple[int, int] | None = None

    def read_new(self) -> list[MetricRecord]:
        try:
            status = self._path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp == self._stamp:
                return []
            with open(self._path, newline="", encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            return []
        if not text.endswith("\n"):
            return []  # being written: the next poll reads it whole
        self._stamp = stamp
        rows = list(csv.DictReader(text.splitlines()))
        first = self._seen_rows
        new, self._seen_rows = rows[first:], max(first, len(rows))
        now = time.time()
        records = []
        for position, row in enumerate(new, start=first):
            step = next((_number(row[c]) for c in STEP_COLUMNS if row.get(c) not in (None, "")), None)
            values = {
                name: number
                for name, cell in row.items()
                if name and name not in STEP_COLUMNS and cell not in (None, "")
                for number in [_number(_int_or_float(cell))]
                if number is not None
            }
            if values:
                # Without a step column a row's step is its place in the file, as for printed metrics.
                records.append({"time": now, "step": int(step) if step is not None else position, "values": values})
        return records


def _int_or_float(cell: str) -> int | float | str:
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
