"""What the report's figures show, computed from a sweep's records (pure: no plotting library).

* the trials ranked best first (the table), with GPU use where records hold it
* the parameters that vary, each as numbers or as categories (metric against parameter,
  parallel coordinates)
* each trial's learning curve from its metric history, PRUNED and FAILURE ones marked
* with several objectives, the Pareto front and the other trials on the first two objectives
* the worker slots: every (host, GPU or worker) with trials packed into lanes of concurrent
  runs, each lane's busy fraction of the sweep's span (did the GPUs stay busy?)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from mlframework.statuses import FAILURE, PRUNED, SUCCESS
from mlframework.sweep.records.catalog import Sweep
from mlframework.sweep.records.objectives import Objective, feasible
from mlframework.sweep.records.record import GPU_USE_FIELDS, TrialRecord, gpu_use

TABLE_ROWS = 1000  # the table holds the best this many trials (the CSV has all)
CURVE_POINTS = 100_000  # learning curves are thinned to about this many points in all


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def label(value: Any) -> str:
    """A parameter value as one short string (categories, hover text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value)


@dataclass
class Parameter:
    """A parameter that takes more than one value in the sweep."""

    name: str
    numeric: bool
    categories: list[str] = field(default_factory=list)  # the values in first-seen order, when not numeric
    log: bool = False  # numeric, positive and spanning two decades or more: drawn on a log axis


@dataclass
class Curve:
    trial: str
    status: str
    steps: list[float]
    values: list[float]


@dataclass
class Run:
    """One trial (or retried attempt) on a slot of the timeline."""

    trial: str
    status: str
    start: float
    end: float


@dataclass
class Slot:
    """One lane of concurrent work on one host / GPU (or worker)."""

    label: str
    runs: list[Run]
    busy_fraction: float


@dataclass
class ReportData:
    sweep: Sweep
    metric: str | None
    mode: str | None
    ranked: list[TrialRecord]
    parameters: list[Parameter]
    curves: list[Curve]
    curve_metric: str | None
    slots: list[Slot]
    span: tuple[float, float] | None
    gpu_keys: list[str]
    without_curve: list[str] = field(default_factory=list)  # "t0003 FAILURE": pruned/failed, no history to draw
    pareto: ParetoView | None = None  # several objectives: the front and the other trials, on the first two

    def scored(self) -> list[TrialRecord]:
        """Successful trials with a numeric value of the metric."""
        metric = self.metric
        return [r for r in self.ranked if r.get("status") == SUCCESS and metric and is_number(metric_value(r, metric))]


@dataclass
class ParetoPoints:
    """Trials drawn alike on the Pareto figure: their first two objective values."""

    name: str  # "Pareto front", "other trials", "breaks a constraint", "pruned (last values)"
    records: list[TrialRecord]
    xs: list[float]
    ys: list[float]


@dataclass
class ParetoView:
    """The Pareto figure: the first two objectives, the front (sorted by the first) and the other trials."""

    objectives: tuple[Objective, ...]  # all of the sweep's (the first two are drawn)
    front: ParetoPoints
    others: list[ParetoPoints]  # each group that has a point

    @property
    def staircase(self) -> str:
        """How to join the front: its attainment staircase, each corner the point both neighbours dominate.

        Sorted by the first objective ascending, a corner takes the worse of each value: the left point's first
        value when larger is better ("vh": up or down first), else the right one's ("hv"). With more than two
        objectives the drawn projection has no staircase: a plain line joins the points.
        """
        if len(self.objectives) != 2:
            return "linear"
        return "vh" if self.objectives[0].mode == "max" else "hv"


def _pareto(sweep: Sweep) -> ParetoView | None:
    if len(sweep.objectives) < 2:
        return None
    first, second = sweep.objectives[:2]

    def points(name: str, records: list[TrialRecord]) -> ParetoPoints:
        drawn = [r for r in records if first.value(r.get("metrics")) is not None]
        drawn = [r for r in drawn if second.value(r.get("metrics")) is not None]
        xs = [first.value(r.get("metrics")) or 0.0 for r in drawn]
        ys = [second.value(r.get("metrics")) or 0.0 for r in drawn]
        return ParetoPoints(name, drawn, xs, ys)

    front = sorted(sweep.front(), key=lambda r: first.value(r.get("metrics")) or 0.0)
    on_front = {str(record["trial"]) for record in front}
    succeeded = [r for r in sweep.records if r.get("status") == SUCCESS and str(r["trial"]) not in on_front]
    kept = [feasible(r.get("metrics"), sweep.constraints) for r in succeeded]
    groups = [
        points("other trials", [r for r, keeps in zip(succeeded, kept) if keeps]),
        points("breaks a constraint", [r for r, keeps in zip(succeeded, kept) if not keeps]),
        points("pruned (last values)", [r for r in sweep.records if r.get("status") == PRUNED]),
    ]
    return ParetoView(sweep.objectives, points(f"Pareto front ({len(front)})", front), [g for g in groups if g.xs])


def metric_value(record: TrialRecord, metric: str) -> Any:
    return (record.get("metrics") or {}).get(metric)


def gpu_use_text(record: TrialRecord, measure: str) -> str:
    """``"mean 71.5 / peak 99"`` for one GPU measure of a trial (sweep/records/record.py); empty on a CPU."""
    return " / ".join(f"{name} {value:.3g}" for name, value in gpu_use(record, measure).items())


def _parameters(records: list[TrialRecord], names: list[str]) -> list[Parameter]:
    found = []
    for name in names:
        values: list[Any] = [(r.get("params") or {}).get(name) for r in records if name in (r.get("params") or {})]
        distinct = {json.dumps(v, sort_keys=True, default=str) for v in values}
        if len(distinct) < 2:
            continue  # the same in every trial: nothing to plot
        if all(is_number(v) for v in values):
            low, high = min(values), max(values)
            found.append(Parameter(name, True, log=low > 0 and high / low >= 100))
        else:
            found.append(Parameter(name, False, list(dict.fromkeys(label(v) for v in values))))
    return found


def _curve_metric(records: list[TrialRecord], metric: str | None) -> str | None:
    """The metric whose history is drawn: the ranking metric when histories hold it, else the first one."""
    first = None
    for record in records:
        for point in record.get("history") or []:
            values = point.get("values") if isinstance(point, dict) else None
            if isinstance(values, dict):
                if metric in values:
                    return metric
                first = first or next(iter(values), None)
    return first


def _curves(records: list[TrialRecord], metric: str | None) -> list[Curve]:
    if metric is None:
        return []
    curves = []
    for record in records:
        steps, values = [], []
        for position, point in enumerate(record.get("history") or []):
            value: Any = (point.get("values") or {}).get(metric) if isinstance(point, dict) else None
            if is_number(value):
                step = point.get("step")
                steps.append(float(step) if is_number(step) else float(position))
                values.append(float(value))
        if values:
            curves.append(Curve(str(record.get("trial")), str(record.get("status")), steps, values))
    total = sum(len(c.values) for c in curves)
    if total > CURVE_POINTS:  # keep every k-th point and the last: the shape, at a bounded cost
        stride = math.ceil(total / CURVE_POINTS)
        for curve in curves:
            keep = list(range(0, len(curve.values), stride))
            if keep[-1] != len(curve.values) - 1:
                keep.append(len(curve.values) - 1)
            curve.steps = [curve.steps[i] for i in keep]
            curve.values = [curve.values[i] for i in keep]
    return curves


def _slot_key(record: TrialRecord) -> str:
    host = str(record.get("host") or "?")
    gpu = record.get("gpu")
    if gpu not in (None, ""):
        return f"{host} · GPU {gpu}"
    worker = str(record.get("worker") or "")
    return f"{host} · {worker.split('@')[0]}" if worker else host


def _slots(runs_by_key: dict[str, list[Run]], span: tuple[float, float]) -> list[Slot]:
    """Pack each host/GPU's runs into lanes (a run goes to the first lane free at its start)."""
    length = max(span[1] - span[0], 1e-9)
    slots = []
    for key in sorted(runs_by_key):
        lanes: list[list[Run]] = []
        for run in sorted(runs_by_key[key], key=lambda r: r.start):
            for lane in lanes:
                if lane[-1].end <= run.start + 1e-6:
                    lane.append(run)
                    break
            else:
                lanes.append([run])
        for number, lane in enumerate(lanes, 1):
            busy = sum(r.end - r.start for r in lane) / length
            name = key if len(lanes) == 1 else f"{key} · {number}"
            slots.append(Slot(name, lane, min(1.0, busy)))
    return slots


def _timeline(sweep: Sweep) -> tuple[list[Slot], tuple[float, float] | None]:
    runs: dict[str, list[Run]] = {}
    retried = [a for attempts in sweep.attempts.values() for a in attempts]
    for records, suffix in ((sweep.records, ""), (retried, " (retried)")):
        for record in records:
            start: Any = record.get("started_at")
            end: Any = record.get("finished_at")
            if not (is_number(start) and is_number(end)) or end < start:
                continue
            run = Run(str(record.get("trial")), f"{record.get('status')}{suffix}", float(start), float(end))
            runs.setdefault(_slot_key(record), []).append(run)
    if not runs:
        return [], None
    span = (min(r.start for rs in runs.values() for r in rs), max(r.end for rs in runs.values() for r in rs))
    return _slots(runs, span), span


def build(sweep: Sweep) -> ReportData:
    """Everything the figures need from one sweep."""
    metric, mode = sweep.metric, sweep.mode
    ranked = sweep.ranked()
    names = [str(n) for n in sweep.meta.get("parameters") or []]
    for record in sweep.records:  # a search may add parameters the grid did not name
        names += [n for n in record.get("params") or {} if n not in names]
    curve_metric = _curve_metric(sweep.records, metric)
    slots, span = _timeline(sweep)
    gpu_keys = [measure for measure in GPU_USE_FIELDS if any(gpu_use(r, measure) for r in sweep.records)]
    curves = _curves(sweep.records, curve_metric)
    drawn = {c.trial for c in curves}
    without = [
        f"{r.get('trial')} {r.get('status')}"
        for r in sweep.records
        if r.get("status") != SUCCESS and str(r.get("trial")) not in drawn
    ]
    return ReportData(
        sweep,
        metric,
        mode,
        ranked,
        _parameters(sweep.records, names),
        curves,
        curve_metric,
        slots,
        span,
        gpu_keys,
        without,
        _pareto(sweep),
    )


STATUS_COLORS = {SUCCESS: "#2a9d8f", FAILURE: "#d62828", PRUNED: "#f4a261"}


def status_color(status: str) -> str:
    for name, color in STATUS_COLORS.items():
        if status.startswith(name):
            return color
    return "#888888"
