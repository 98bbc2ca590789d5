"""Export a recorded sweep to MLflow: a parent run for the sweep, one nested run per trial.

Each trial's run holds its parameters, every step of its metric history (final values that no
step reported are logged once), its status (SUCCESS -> FINISHED, FAILURE -> FAILED, PRUNED ->
KILLED; the exact one in the ``mlframework.status`` tag), host, GPU, duration and provenance tags
(what sweep.json and the trial's record hold: git commit, versions, command, and any further
fields a record carries), with start and end times from the record.

Idempotent: runs are tagged ``mlframework.sweep`` / ``mlframework.trial`` and looked up before
anything is created. A trial run is tagged ``mlframework.exported`` only once everything of it
is logged; a run without that tag (an export cut short) is deleted and made again. Exporting a
sweep that is still running adds the trials recorded since.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from mlframework.exceptions import ConfigError, SweepError
from mlframework.statuses import FAILURE, PRUNED, SUCCESS
from mlframework.sweep.records.catalog import Sweep
from mlframework.sweep.records.record import GPU_USE_FIELDS, TrialRecord

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mlframework[mlflow]'"
TAG_SWEEP, TAG_TRIAL, TAG_KIND, TAG_DONE = (
    "mlframework.sweep",
    "mlframework.trial",
    "mlframework.kind",
    "mlframework.exported",
)
RUN_STATUS = {SUCCESS: "FINISHED", FAILURE: "FAILED", PRUNED: "KILLED"}
# Record fields that are not tags: logged otherwise, or too big for a tag (the log and CSV keep them).
_NOT_TAGS = {"params", "metrics", "history", "result", "attempts", "type", "trial", "index"}
_NOT_TAGS |= {"stderr_tail", "stdout_tail"}  # a failure's tails: tags of their own below
_TAG_LIMIT = 5000  # MLflow keeps tag values up to 8000 characters; longer ones are cut


class MlflowMissing(ConfigError):
    """MLflow is not installed."""


@dataclass
class ExportResult:
    experiment: str
    parent_run: str
    created: int  # trial runs made by this export
    existing: int  # trial runs a previous export had made


def _client_class() -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise MlflowMissing(f"exporting to MLflow needs the mlflow package: {INSTALL_HINT}") from None
    return MlflowClient


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= _TAG_LIMIT else text[: _TAG_LIMIT - 3] + "..."


def _flat(prefix: str, value: Any) -> dict[str, str]:
    """Nested mappings as dotted tag names (``mlframework.project_revision.commit``)."""
    if isinstance(value, dict):
        tags: dict[str, str] = {}
        for key, inner in value.items():
            tags.update(_flat(f"{prefix}.{key}", inner))
        return tags
    return {} if value is None or value == "" or value == [] else {prefix: _text(value)}


def _millis(seconds: Any) -> int | None:
    return int(seconds * 1000) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sweep_tags(sweep: Sweep) -> dict[str, str]:
    """The parent run's tags: what sweep.json holds, flattened."""
    tags = {TAG_SWEEP: sweep.id, TAG_KIND: "sweep", "mlflow.runName": sweep.id}
    for key, value in sweep.meta.items():
        if key not in ("id", "parameters"):
            tags.update(_flat(f"mlframework.{key}", value))
    tags["mlframework.status"] = sweep.status
    return tags


def trial_tags(sweep: Sweep, record: TrialRecord, parent: str) -> dict[str, str]:
    """A trial run's tags: host, GPU, status and every other scalar of its record, plus the sweep's provenance."""
    trial = str(record.get("trial"))
    tags = {
        TAG_SWEEP: sweep.id,
        TAG_TRIAL: trial,
        TAG_KIND: "trial",
        "mlflow.parentRunId": parent,
        "mlflow.runName": trial,
    }
    for key, value in record.items():
        if key not in _NOT_TAGS:
            tags.update(_flat(f"mlframework.{key}", value))
    revision = sweep.meta.get("project_revision")
    if isinstance(revision, dict):
        tags.update({k: v for k, v in _flat("mlframework.project_revision", revision).items() if k not in tags})
    if record.get("stderr_tail") and record.get("status") != SUCCESS:
        tags["mlframework.stderr_tail"] = _text("\n".join(str(line) for line in record["stderr_tail"]))
    if record.get("stdout_tail") and record.get("status") != SUCCESS:
        tags["mlframework.stdout_tail"] = _text("\n".join(str(line) for line in record["stdout_tail"]))
    if isinstance(revision, dict) and revision.get("commit"):
        tags.setdefault("mlflow.source.git.commit", str(revision["commit"]))
    return tags


def trial_metrics(record: TrialRecord) -> list[Any]:
    """Every step of the trial's history as MLflow Metric entities (finals no step reported: once)."""
    from mlflow.entities import Metric

    finished = _millis(record.get("finished_at")) or 0
    metrics, logged = [], set()
    for position, point in enumerate(record.get("history") or []):
        if not isinstance(point, dict) or not isinstance(point.get("values"), dict):
            continue
        step: Any = point.get("step")
        step = int(step) if _number(step) else position
        stamp = _millis(point.get("time")) or finished
        for key, value in point["values"].items():
            if _number(value):
                metrics.append(Metric(str(key), float(value), stamp, step))
                logged.add(key)
    for key, value in (record.get("metrics") or {}).items():
        if key not in logged and _number(value):
            metrics.append(Metric(str(key), float(value), finished, 0))
    for keys in GPU_USE_FIELDS.values():  # GPU use (mean/peak), where the worker recorded it
        metrics += [Metric(key, float(value), finished, 0) for key in keys if _number(value := record.get(key))]
    duration = record.get("duration_s")
    if _number(duration):
        metrics.append(Metric("duration_s", float(duration), finished, 0))
    return metrics


def _runs(client: Any, experiment_id: str, sweep_id: str) -> list[Any]:
    runs, token = [], None
    query = f"tags.`{TAG_SWEEP}` = '{sweep_id}'"
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=5000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _experiment(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return str(client.create_experiment(name))
    if experiment.lifecycle_stage == "deleted":
        raise SweepError(f"MLflow experiment {name!r} is deleted: restore it or pass --experiment")
    return str(experiment.experiment_id)


def _log_run(client: Any, run_id: str, params: dict[str, Any], metrics: list[Any], tags: dict[str, str]) -> None:
    from mlflow.entities import Param, RunTag

    # log_batch takes at most 1000 metrics, 100 params and 100 tags per call.
    for chunk in _chunks([Param(str(k), _text(v)) for k, v in params.items()], 100):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(metrics, 1000):
        client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks([RunTag(k, v) for k, v in tags.items()], 100):
        client.log_batch(run_id, tags=chunk)


def export_sweep(sweep: Sweep, tracking_uri: str, experiment: str | None = None) -> ExportResult:
    """Export ``sweep`` to the MLflow store at ``tracking_uri``; a second export creates nothing new."""
    client_class = _client_class()
    from mlflow.exceptions import MlflowException

    try:
        return _export(client_class(tracking_uri=tracking_uri), sweep, experiment or sweep.project)
    except MlflowException as exc:  # a store that cannot be used (bad URI, file store refused, server down)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SweepError(f"MLflow at {tracking_uri}: {message}") from None


def _export(client: Any, sweep: Sweep, name: str) -> ExportResult:
    experiment_id = _experiment(client, name)
    existing = _runs(client, experiment_id, sweep.id)
    parents = [r for r in existing if r.data.tags.get(TAG_KIND) == "sweep"]
    trials = {}
    for run in existing:
        trial = run.data.tags.get(TAG_TRIAL)
        if trial is None:
            continue
        if run.data.tags.get(TAG_DONE) == "true" and trial not in trials:
            trials[trial] = run.info.run_id
        else:  # half-exported by an export that stopped, or a duplicate: made again
            client.delete_run(run.info.run_id)
    started = _millis(sweep.started.timestamp()) if sweep.started else None
    if parents:
        parent = parents[0].info.run_id
    else:
        parent = client.create_run(experiment_id, start_time=started, run_name=sweep.id).info.run_id
    grid_params = {k: v for k, v in (sweep.records[0].get("params") or {}).items()} if sweep.records else {}
    constant = {k: v for k, v in grid_params.items() if all((r.get("params") or {}).get(k) == v for r in sweep.records)}
    _log_run(client, parent, {} if parents else constant, [], sweep_tags(sweep))
    created = 0
    for record in sweep.records:
        trial = str(record.get("trial"))
        if trial in trials:
            continue
        run = client.create_run(
            experiment_id, start_time=_millis(record.get("started_at")), tags={TAG_SWEEP: sweep.id, TAG_TRIAL: trial}
        )
        run_id = run.info.run_id
        _log_run(client, run_id, record.get("params") or {}, trial_metrics(record), trial_tags(sweep, record, parent))
        client.set_terminated(
            run_id, RUN_STATUS.get(str(record.get("status")), "FAILED"), _millis(record.get("finished_at"))
        )
        client.set_tag(run_id, TAG_DONE, "true")
        created += 1
    if sweep.status != "running":
        ends = [float(r["finished_at"]) for r in sweep.records if _number(r.get("finished_at"))]
        status = "FINISHED" if sweep.status == "finished" else "KILLED"
        client.set_terminated(parent, status, _millis(max(ends)) if ends else None)
    log.info("sweep %s: %d trial run(s) exported, %d already there", sweep.id, created, len(trials))
    return ExportResult(name, parent, created, len(trials))
