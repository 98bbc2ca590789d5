"""Reading sweep directories back: the sweeps of a results directory and what each one recorded.

Everything here reads ``RESULTS/<sweep-id>/`` only (the files :mod:`mlframework.sweep.records.results`
writes) and never a broker: ``ls``, ``show``, ``report``, ``export`` and ``--resume`` all start
from :func:`load_sweep`. A damaged or half-written directory raises :class:`DamagedSweep`, one
line naming the file at fault; a trial line cut short by a crash is skipped, as the store does.

A sweep.json that says ``running`` is checked against its driver: on the host that ran it, a
driver pid that no longer exists means the sweep was interrupted (the driver was killed before
it could say so). From another host it cannot be checked, and the status says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlframework.exceptions import SweepError
from mlframework.statuses import FAILURE, PRUNED, SUCCESS
from mlframework.sweep.records.objectives import (
    Constraint,
    Objective,
    constraints_from_meta,
    feasible,
    objectives_from_meta,
)
from mlframework.sweep.records.pareto import pareto_front
from mlframework.sweep.records.ranking import pick_metric, rank
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.records.results import ResultsStore

FINAL_STATES = ("finished", "interrupted", "cancelled")


class DamagedSweep(SweepError):
    """A sweep directory that cannot be read (missing or broken sweep.json)."""


class UnknownSweep(SweepError):
    """A SWEEP_ID that names no sweep of the results directory, or several (``candidates``)."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


@dataclass
class Sweep:
    """One sweep as recorded: its sweep.json, its trials' records and the attempts that were retried."""

    directory: Path
    meta: dict[str, Any]
    records: list[TrialRecord] = field(default_factory=list)  # in grid order
    attempts: dict[str, list[TrialRecord]] = field(default_factory=dict)  # the failed attempts retried, per trial
    status: str = "running"  # running / finished / interrupted / cancelled, checked against the driver
    status_note: str = ""  # why the status differs from what sweep.json says, or why it is unverified

    @property
    def id(self) -> str:
        return str(self.meta.get("id") or self.directory.name)

    @property
    def project(self) -> str:
        return Path(str(self.meta.get("project") or "?")).name

    @property
    def kind(self) -> str:
        """``grid`` or ``search`` (an Optuna search says so in sweep.json)."""
        declared = self.meta.get("kind") or self.meta.get("strategy")
        if isinstance(declared, str) and declared:
            return declared
        return "search" if self.meta.get("search") else "grid"

    @property
    def total(self) -> int:
        value = self.meta.get("trials")
        return value if isinstance(value, int) else len(self.records)

    def count(self, status: str) -> int:
        """How many trials ended with ``status`` (SUCCESS, FAILURE, PRUNED)."""
        return sum(1 for record in self.records if record.get("status") == status)

    @property
    def metric(self) -> str | None:
        return pick_metric(self.records, self.meta.get("metric") or self.meta.get("requested_metric"), self.mode_)[0]

    @property
    def mode_(self) -> str | None:
        mode = self.meta.get("mode") or self.meta.get("requested_mode")
        return mode if mode in ("min", "max") else None

    @property
    def mode(self) -> str | None:
        return pick_metric(self.records, self.metric, self.mode_)[1]

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The objectives of a sweep with several (``--metric a --metric b``); none for one metric."""
        return objectives_from_meta(self.meta)

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        """The bounds (``--constraint``) a trial keeps to be the best or on the front."""
        return constraints_from_meta(self.meta)

    def ranked(self) -> list[TrialRecord]:
        """Records best first by the sweep's metric (failed, infeasible and metric-less trials last)."""
        constraints = self.constraints
        return rank(self.records, self.metric, self.mode, lambda r: feasible(r.get("metrics"), constraints))

    def front(self) -> list[TrialRecord]:
        """The Pareto front of a sweep with several objectives, best first by the first; empty otherwise."""
        objectives = self.objectives
        return pareto_front(self.records, objectives, self.constraints) if objectives else []

    def best(self) -> TrialRecord | None:
        """The best successful trial with the metric, or None."""
        ranked = self.ranked()
        metric = self.metric
        if ranked and metric and ranked[0].get("status") == SUCCESS and metric in (ranked[0].get("metrics") or {}):
            return ranked[0] if feasible(ranked[0].get("metrics"), self.constraints) else None
        return None

    @property
    def started(self) -> _dt.datetime | None:
        return _parse_time(self.meta.get("created_at"))

    @property
    def duration_s(self) -> float | None:
        """From the start to the end recorded (to the last trial, or now, while it runs)."""
        start = self.started
        if start is None:
            return None
        end = _parse_time(self.meta.get("finished_at")) if self.status != "running" else None
        if end is None or end < start:
            finished = [float(r["finished_at"]) for r in self.records if isinstance(r.get("finished_at"), (int, float))]
            if self.status == "running":
                end = _dt.datetime.now().astimezone()
            elif finished:
                end = _dt.datetime.fromtimestamp(max(finished)).astimezone()
            else:
                return None
        return max(0.0, (end - start).total_seconds())

    def summary(self) -> dict[str, Any]:
        """One line of ``ls`` as plain data (``ls --json``)."""
        best = self.best()
        metric = self.metric
        return {
            "id": self.id,
            "project": self.project,
            "kind": self.kind,
            "status": self.status,
            "status_note": self.status_note or None,
            "total": self.total,
            "done": self.count(SUCCESS),
            "failed": self.count(FAILURE),
            "pruned": self.count(PRUNED),
            "recorded": len(self.records),
            "metric": metric,
            "mode": self.mode,
            "best": (best.get("metrics") or {}).get(metric) if best and metric else None,
            "best_trial": best.get("trial") if best else None,
            # several objectives: the trials of the Pareto front, best first by the first objective
            "objectives": [str(objective) for objective in self.objectives] or None,
            "front": [str(record["trial"]) for record in self.front()] if self.objectives else None,
            "started": self.meta.get("created_at"),
            "duration_s": self.duration_s,
            "directory": str(self.directory),
        }


def _parse_time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.astimezone()


def read_meta(directory: Path) -> dict[str, Any]:
    """``directory/sweep.json`` as a dict; :class:`DamagedSweep` (one line) when it is missing or broken."""
    path = directory / "sweep.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if directory.is_dir():
            raise DamagedSweep(f"{directory}: no sweep.json (not a sweep, or one that never started)") from None
        raise DamagedSweep(f"{directory}: no sweep {directory.name!r} here (check --results)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedSweep(f"{path}: not readable: {exc}") from None
    except ValueError as exc:
        raise DamagedSweep(f"{path}: damaged (not JSON: {exc}); its trials.jsonl may still be complete") from None
    if not isinstance(meta, dict):
        raise DamagedSweep(f"{path}: damaged (a JSON {type(meta).__name__}, not a sweep record)")
    for key, kind in (("project", str), ("parameters_file", str)):
        if not isinstance(meta.get(key), kind):
            raise DamagedSweep(f"{path}: damaged (no {key!r} in it)")
    return meta


def cancel_recorded(directory: Path) -> bool:
    """Whether ``directory/sweep.json`` says the sweep was cancelled (``mlframework cancel`` writes it first)."""
    try:
        return bool(json.loads((directory / "sweep.json").read_text(encoding="utf-8")).get("status") == "cancelled")
    except (OSError, ValueError, AttributeError):
        return False


def driver_alive(pid: int) -> bool:
    """Whether the driver recorded as ``pid`` on this machine still runs.

    An exited one its parent has not reaped yet (a zombie) does not, nor a pid
    the system has since given to another program.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return True
    return b"python" in cmdline or b"mlframework" in cmdline


def driver_status(meta: dict[str, Any]) -> tuple[str, str]:
    """(status, note): sweep.json's status, with a ``running`` checked against its driver where possible."""
    status = str(meta.get("status") or "running")
    if status != "running":
        return status, ""
    host, pid = meta.get("driver_host"), meta.get("driver_pid")
    if host and host != socket.gethostname():
        return "running", f"driver on {host}, not checked from here"
    if not isinstance(pid, int):
        return "running", "driver pid not recorded, not checked"
    if driver_alive(pid):
        return "running", ""
    return "interrupted", f"its driver (pid {pid}) is gone"


def load_sweep(directory: str | os.PathLike[str], with_records: bool = True) -> Sweep:
    """Read one sweep directory; :class:`DamagedSweep` when its sweep.json cannot be read."""
    path = Path(directory)
    meta = read_meta(path)
    status, note = driver_status(meta)
    sweep = Sweep(path, meta, status=status, status_note=note)
    if with_records:
        try:
            seen: dict[str, TrialRecord] = {}
            for record in ResultsStore.read_jsonl(path / "trials.jsonl"):
                seen.setdefault(str(record["trial"]), record)
            for attempt in ResultsStore.read_jsonl(path / "attempts.jsonl"):
                sweep.attempts.setdefault(str(attempt["trial"]), []).append(attempt)
        except (OSError, UnicodeDecodeError) as exc:
            raise DamagedSweep(f"{path / 'trials.jsonl'}: not readable: {exc}") from None
        sweep.records = sorted(seen.values(), key=_grid_order)
    return sweep


def _grid_order(record: TrialRecord) -> tuple[int, str]:
    index = record.get("index")
    return (index if isinstance(index, int) else 0, str(record.get("trial")))


def resolve_sweep_id(results_root: str | os.PathLike[str], text: str) -> str:
    """The id of the sweep of ``results_root`` that ``text`` names: the exact id, else a unique prefix of one.

    :class:`UnknownSweep` (one line) when none matches (naming the results directory) or several do
    (listing them; ``candidates`` holds them all).
    """
    root = Path(results_root)
    if "/" in text or text in ("", ".", ".."):
        raise UnknownSweep(f"{text!r}: not a sweep id", [])
    if (root / text).is_dir():
        return text
    matches = sorted(p.name for p in _sweep_dirs(root) if p.name.startswith(text)) if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:10]) + (f", ... ({len(matches) - 10} more)" if len(matches) > 10 else "")
        raise UnknownSweep(f"{text!r} matches {len(matches)} sweeps in {root}: {shown}", matches)
    raise UnknownSweep(f"no sweep {text!r} in {root} (check --results; `mlframework ls` lists them)", [])


def find_sweep(results_root: str | os.PathLike[str], sweep_id: str) -> Sweep:
    """The sweep ``results_root/sweep_id`` (an unambiguous prefix of an id will do)."""
    return load_sweep(Path(results_root) / resolve_sweep_id(results_root, sweep_id))


@dataclass
class Listing:
    """A sweep directory of ``ls``: the sweep, or why it cannot be read."""

    directory: Path
    sweep: Sweep | None
    error: str | None = None


def list_sweeps(results_root: str | os.PathLike[str]) -> list[Listing]:
    """Every sweep directory under ``results_root``, newest first; damaged ones carry their error."""
    root = Path(results_root)
    if not root.is_dir():
        raise SweepError(f"{root}: no results directory (check --results)")
    listings = []
    for directory in _sweep_dirs(root):
        try:
            listings.append(Listing(directory, load_sweep(directory)))
        except DamagedSweep as exc:
            listings.append(Listing(directory, None, str(exc)))

    def newest_first(listing: Listing) -> tuple[float, str]:
        started = listing.sweep.started if listing.sweep else None
        stamp = started.timestamp() if started else _mtime(listing.directory)
        return (-stamp, listing.directory.name)

    return sorted(listings, key=newest_first)


def _sweep_dirs(root: Path) -> Iterator[Path]:
    for entry in root.iterdir():
        if entry.is_dir() and not entry.name.startswith("."):
            yield entry


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
