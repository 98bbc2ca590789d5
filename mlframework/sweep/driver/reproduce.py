"""Run one recorded trial again: its sweep's project and task, its parameters, into a new sweep; then compare.

:func:`plan_reproduction` reads the trial's record and writes a one-combination
grid to ``RESULTS/<sweep>/reproductions/<new-id>.yml`` (a real file, so the new
sweep can be ``--resume``-d like any other; with the command the sweep's parameters
file gave, when it gave one); :func:`provenance_changes` says what
differs between the original trial's provenance and the new one's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from mlframework.exceptions import SweepError
from mlframework.sweep.params.grid_file import load_grid
from mlframework.sweep.params.settings import FileCommand
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.wire.ids import check_sweep_id, new_sweep_id, trial_id

REPRODUCTIONS_DIR = "reproductions"

# What provenance fields are compared, in the order they are reported, with how they are named.
COMPARED = (
    ("commit", "project commit"),
    ("diff_sha256", "project's local changes (diff hash)"),
    ("packages", "worker Python packages (hash)"),
    ("python", "Python version"),
    ("image", "worker image"),
    ("gpu_model", "GPU model"),
    ("gpu_driver", "GPU driver"),
)


def _read_sweep(directory: Path, sweep_id: str) -> dict[str, Any]:
    try:
        meta = json.loads((directory / "sweep.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{directory}: no sweep {sweep_id!r} here (check --results)") from None
    except ValueError as exc:
        raise SweepError(f"{directory / 'sweep.json'}: not readable: {exc}") from None
    if not isinstance(meta, dict) or not meta.get("project") or not meta.get("task"):
        raise SweepError(f"{directory / 'sweep.json'}: not a sweep record (no project or task)")
    return meta


def find_record(directory: Path, trial: str) -> TrialRecord:
    """The record of ``trial`` (``t0003``, or its index ``3``) in ``directory/trials.jsonl``."""
    wanted_index = int(trial) if trial.isdigit() else None
    try:
        lines = (directory / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SweepError(f"{directory / 'trials.jsonl'}: no trial recorded in this sweep") from None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line of a sweep that was killed
        if isinstance(record, dict) and (
            record.get("trial") == trial or (wanted_index is not None and record.get("index") == wanted_index)
        ):
            return cast(TrialRecord, record)
    raise SweepError(f"{directory / 'trials.jsonl'}: no record of trial {trial!r}")


def _grid_text(params: Mapping[str, Any]) -> str:
    # JSON scalars are YAML scalars of the same type: 1.0 stays a float, "1" a string, true a bool.
    return "".join(f"{json.dumps(name)}: [{json.dumps(value)}]\n" for name, value in params.items())


def plan_reproduction(
    results_root: Path, sweep_id: str, trial: str, new_id: str | None = None
) -> tuple[dict[str, Any], TrialRecord, Path, str]:
    """``(sweep meta, trial record, one-combination grid file, new sweep id)`` for running ``trial`` again."""
    directory = Path(results_root) / check_sweep_id(sweep_id)
    meta = _read_sweep(directory, sweep_id)
    record = find_record(directory, trial)
    params = record.get("params")
    if not isinstance(params, dict):
        raise SweepError(f"{directory / 'trials.jsonl'}: trial {trial!r} has no parameters recorded")
    project = Path(meta["project"])
    if not project.is_dir():
        raise SweepError(f"{project}: the project of sweep {sweep_id} is not there any more")
    new_id = check_sweep_id(new_id) if new_id else new_sweep_id(project.name)
    grid_file = directory / REPRODUCTIONS_DIR / f"{new_id}.yml"
    grid_file.parent.mkdir(exist_ok=True)
    # The command the sweep's parameters file gave (sweep.json records it), for a project with no tasks.py.
    command = FileCommand.from_record(meta["command"], str(directory / "sweep.json")) if meta.get("command") else None
    grid_file.write_text(
        f"# trial {record.get('trial')} of sweep {sweep_id}, run again as sweep {new_id}\n"
        + (command.to_yaml() if command is not None else "")
        + _grid_text(params),
        encoding="utf-8",
    )
    if load_grid(grid_file)[0] != params:  # the file must give back exactly the recorded combination
        raise SweepError(f"{grid_file}: the parameters of trial {trial!r} do not survive a round trip")
    return meta, record, grid_file, new_id


def provenance_changes(original: TrialRecord, new: TrialRecord) -> list[tuple[str, Any, Any]]:
    """``(what, original value, new value)`` for each compared provenance field that differs."""
    before, after = original.get("provenance") or {}, new.get("provenance") or {}
    return [(label, before.get(key), after.get(key)) for key, label in COMPARED if before.get(key) != after.get(key)]


def new_record(directory: Path) -> TrialRecord:
    """The one trial's record of a reproduction sweep."""
    return find_record(directory, trial_id(0, 1))
