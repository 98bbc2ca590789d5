"""The report's figures as PNG files, drawn with matplotlib (Agg: no display, no browser).

The same figures as the page, from the same :class:`~mlframework.report.data.ReportData`:
the Pareto front (several objectives), metric against each parameter, parallel coordinates,
parameter importance, learning curves, the worker-slot timeline. Many lines are drawn as one
LineCollection each, so 10,000 trials cost about as much as ten.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlframework.report.data import Parameter, ReportData, label, metric_value, status_color
from mlframework.statuses import FAILURE, PRUNED, SUCCESS
from mlframework.sweep.records.record import TrialRecord

DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def _axis_values(data: ReportData, records: list[TrialRecord], index: int) -> list[float]:
    parameter = data.parameters[index]
    values: list[Any] = [(r.get("params") or {}).get(parameter.name) for r in records]
    if parameter.numeric:
        return [float(v) for v in values]
    position = {c: i for i, c in enumerate(parameter.categories)}
    return [float(position.get(label(v), 0)) for v in values]


def metric_vs_parameters(data: ReportData, path: Path) -> Path | None:
    scored, metric = data.scored(), data.metric
    if not scored or not data.parameters or metric is None:
        return None
    plt = _pyplot()
    columns = min(3, len(data.parameters))
    rows = math.ceil(len(data.parameters) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    ys = [float(metric_value(r, metric)) for r in scored]
    for number, parameter in enumerate(data.parameters):
        axis = axes[number // columns][number % columns]
        axis.scatter(_axis_values(data, scored, number), ys, s=12, alpha=0.6, color=status_color(SUCCESS))
        axis.set_title(parameter.name)
        if parameter.log:
            axis.set_xscale("log")
        if not parameter.numeric:
            axis.set_xticks(range(len(parameter.categories)), parameter.categories, rotation=30)
        axis.set_ylabel(metric)
    for extra in range(len(data.parameters), rows * columns):
        axes[extra // columns][extra % columns].axis("off")
    figure.tight_layout()
    return _save(figure, path)


def parallel_coordinates(data: ReportData, path: Path) -> Path | None:
    from matplotlib.collections import LineCollection

    scored, metric = data.scored(), data.metric
    if not scored or not data.parameters or metric is None:
        return None
    plt = _pyplot()
    # Worst first, so that the best trials are drawn on top.
    scored = sorted(scored, key=lambda r: float(metric_value(r, metric)), reverse=data.mode == "min")
    columns = [_axis_values(data, scored, i) for i in range(len(data.parameters))]
    for number, parameter in enumerate(data.parameters):
        if parameter.log:
            columns[number] = [math.log10(v) for v in columns[number]]
    columns.append([float(metric_value(r, metric)) for r in scored])
    names = [p.name for p in data.parameters] + [metric]
    scaled, spans = [], []
    for values in columns:  # every axis 0..1
        low, high = min(values), max(values)
        spans.append((low, high))
        scaled.append([(v - low) / (high - low) if high > low else 0.5 for v in values])
    lines = [list(zip(range(len(names)), point)) for point in zip(*scaled)]
    figure, axis = plt.subplots(figsize=(max(6, 1.8 * len(names)), 4))
    collection = LineCollection(lines, array=columns[-1], cmap="viridis_r" if data.mode == "min" else "viridis")
    collection.set_alpha(0.5)
    axis.add_collection(collection)
    for x, (low, high) in enumerate(spans):
        axis.axvline(x, color="#444", linewidth=0.8)
        axis_parameter: Parameter | None = data.parameters[x] if x < len(data.parameters) else None
        if axis_parameter is not None and not axis_parameter.numeric:  # each category at its place on the axis
            for position, category in enumerate(axis_parameter.categories):
                where = (position - low) / (high - low) if high > low else 0.5
                axis.text(x + 0.03, where, category, fontsize=8, va="center")
            continue
        logged = axis_parameter is not None and axis_parameter.log
        shown = (10**low, 10**high) if logged else (low, high)
        axis.text(x, 1.04, f"{shown[1]:.3g}", ha="center", fontsize=8)
        axis.text(
            x,
            -0.08,
            f"{shown[0]:.3g}{' (log)' if logged else ''}",
            ha="center",
            fontsize=8,
        )
    axis.set_xticks(range(len(names)), names)
    axis.set_xlim(-0.2, len(names) - 0.8)
    axis.set_ylim(-0.12, 1.1)
    axis.set_yticks([])
    figure.colorbar(collection, ax=axis, label=metric)
    return _save(figure, path)


def importance(importances: dict[str, float], path: Path) -> Path | None:
    if not importances:
        return None
    plt = _pyplot()
    names = sorted(importances, key=importances.__getitem__)
    figure, axis = plt.subplots(figsize=(6, 1 + 0.4 * len(names)))
    axis.barh(names, [importances[n] for n in names], color="#457b9d")
    axis.set_xlabel("importance (Optuna fANOVA)")
    return _save(figure, path)


def learning_curves(data: ReportData, path: Path) -> Path | None:
    from matplotlib.collections import LineCollection

    if not data.curves:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    if data.without_curve:
        shown = ", ".join(data.without_curve[:6]) + (" ..." if len(data.without_curve) > 6 else "")
        axis.set_title(f"stopped before any step: {shown}", fontsize=8, color=status_color(FAILURE))
    for status, name in ((SUCCESS, "finished"), (PRUNED, "pruned"), (FAILURE, "failed")):
        curves = [c for c in data.curves if c.status == status]
        if not curves:
            continue
        color = status_color(status)
        axis.add_collection(
            LineCollection([list(zip(c.steps, c.values)) for c in curves], colors=color, alpha=0.6, label=name)
        )
        if status != SUCCESS:
            axis.scatter([c.steps[-1] for c in curves], [c.values[-1] for c in curves], marker="x", color=color)
    axis.autoscale()
    axis.set_xlabel("step")
    axis.set_ylabel(data.curve_metric or "")
    axis.legend()
    return _save(figure, path)


def timeline(data: ReportData, path: Path) -> Path | None:
    if not data.slots or data.span is None:
        return None
    plt = _pyplot()
    origin = data.span[0]
    figure, axis = plt.subplots(figsize=(9, 1 + 0.35 * len(data.slots)))
    for row, slot in enumerate(reversed(data.slots)):
        bars = [(run.start - origin, max(run.end - run.start, 1e-3)) for run in slot.runs]
        colors = [status_color(run.status) for run in slot.runs]
        axis.broken_barh(bars, (row - 0.4, 0.8), facecolors=colors)
    axis.set_yticks(
        range(len(data.slots)), [f"{s.label} ({s.busy_fraction:.0%} busy)" for s in reversed(data.slots)], fontsize=8
    )
    axis.set_xlabel("seconds since the first trial started")
    return _save(figure, path)


def pareto_front(data: ReportData, path: Path) -> Path | None:
    """Several objectives: the first two, the front's trials highlighted and joined by its staircase."""
    view = data.pareto
    if view is None:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    styles = {
        "other trials": {"color": "#a8b3bd", "marker": "o"},
        "breaks a constraint": {"color": "#9b5de5", "marker": "o"},
        "pruned (last values)": {"color": status_color(PRUNED), "marker": "x"},
    }
    for group in view.others:
        axis.scatter(group.xs, group.ys, s=18, alpha=0.7, label=group.name, **styles.get(group.name, {}))
    where = {"vh": "pre", "hv": "post"}.get(view.staircase)
    if where is not None:
        axis.step(view.front.xs, view.front.ys, where=where, color="#1d3557", linewidth=1.5)
    else:
        axis.plot(view.front.xs, view.front.ys, color="#1d3557", linewidth=1.5)
    axis.scatter(view.front.xs, view.front.ys, s=50, color="#e63946", edgecolors="#1d3557", label=view.front.name)
    first, second = view.objectives[:2]
    axis.set_xlabel(f"{first.name} ({first.mode})")
    axis.set_ylabel(f"{second.name} ({second.mode})")
    axis.legend(fontsize=8)
    return _save(figure, path)


def write_all(data: ReportData, importances: dict[str, float], directory: Path) -> list[Path]:
    """Write every figure there is something to draw for; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    made = [
        pareto_front(data, directory / "pareto-front.png"),
        metric_vs_parameters(data, directory / "metric-vs-parameters.png"),
        parallel_coordinates(data, directory / "parallel-coordinates.png"),
        importance(importances, directory / "parameter-importance.png"),
        learning_curves(data, directory / "learning-curves.png"),
        timeline(data, directory / "timeline.png"),
    ]
    return [path for path in made if path is not None]
