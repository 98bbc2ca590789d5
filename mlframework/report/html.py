"""The report page: one self-contained HTML file, plotly's JavaScript inlined (no CDN, no server).

Why plotly: its figures stay interactive in a file opened from disk (hover shows the trial and
its parameters, zoom, brushing axes of the parallel coordinates), and the JavaScript ships inside
the Python package, so the page works offline. The price is ~4.6 MB of script per page.
The best-trials table is plain HTML, sorted by a few lines of inline script (click a header).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from mlframework.report.data import (
    TABLE_ROWS,
    ReportData,
    gpu_use_text,
    is_number,
    label,
    metric_value,
    status_color,
)
from mlframework.statuses import FAILURE, PRUNED, SUCCESS
from mlframework.sweep.records.record import TrialRecord
from mlframework.system.fileio import write_text_atomic

_CONFIG = {"displaylogo": False, "responsive": True}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0}th:hover{background:#e8e8e8}
.scroll{max-height:420px;overflow:auto}.SUCCESS{color:#2a9d8f}.FAILURE{color:#d62828}.PRUNED{color:#e76f51}
.meta td:first-child{color:#666}.note{color:#666;font-size:.85em}.figure{min-height:200px}
"""

# Sorts the table by the clicked column: numbers as numbers, then text; a second click reverses.
_SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (!isNaN(nx) && !isNaN(ny)) return dir * (nx - ny);
      if (!isNaN(nx)) return -1; if (!isNaN(ny)) return 1;
      return dir * x.localeCompare(y);
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


def _hover(record: TrialRecord, metric: str | None) -> str:
    parts = [f"{record.get('trial')} {record.get('status')}"]
    parts += [f"{k}={label(v)}" for k, v in (record.get("params") or {}).items()]
    if metric and metric in (record.get("metrics") or {}):
        parts.append(f"{metric}={label(metric_value(record, metric))}")
    return "<br>".join(html.escape(p) for p in parts)


def _metric_vs_parameters(data: ReportData) -> Any:
    from plotly.subplots import make_subplots

    scored, metric = data.scored(), data.metric
    if not scored or not data.parameters or metric is None:
        return None
    columns = min(3, len(data.parameters))
    rows = -(-len(data.parameters) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[p.name for p in data.parameters])
    hover = [_hover(r, metric) for r in scored]
    for number, parameter in enumerate(data.parameters):
        row, col = number // columns + 1, number % columns + 1
        xs = [(r.get("params") or {}).get(parameter.name) for r in scored]
        if not parameter.numeric:
            xs = [label(x) for x in xs]
        figure.add_scatter(
            x=xs,
            y=[metric_value(r, metric) for r in scored],
            mode="markers",
            marker={"size": 6, "opacity": 0.6, "color": status_color(SUCCESS)},
            text=hover,
            hoverinfo="text",
            showlegend=False,
            row=row,
            col=col,
        )
        axis_type = "log" if parameter.log else ("linear" if parameter.numeric else "category")
        figure.update_xaxes(type=axis_type, row=row, col=col)
        figure.update_yaxes(title_text=metric if col == 1 else None, row=row, col=col)
    figure.update_layout(height=300 * rows, margin={"t": 40, "b": 40})
    return figure


def _parallel_coordinates(data: ReportData) -> Any:
    import plotly.graph_objects as go

    scored, metric = data.scored(), data.metric
    if not scored or not data.parameters or metric is None:
        return None
    dimensions = []
    for parameter in data.parameters:
        values = [(r.get("params") or {}).get(parameter.name) for r in scored]
        if parameter.numeric:
            dimensions.append({"label": parameter.name, "values": values})
        else:
            index = {category: i for i, category in enumerate(parameter.categories)}
            dimensions.append(
                {
                    "label": parameter.name,
                    "values": [index.get(label(v), 0) for v in values],
                    "tickvals": list(range(len(parameter.categories))),
                    "ticktext": parameter.categories,
                }
            )
    values = [metric_value(r, metric) for r in scored]
    dimensions.append({"label": metric, "values": values})
    line = {"color": values, "colorscale": "Viridis", "showscale": True, "reversescale": data.mode == "min"}
    figure = go.Figure(go.Parcoords(line=line, dimensions=dimensions))
    figure.update_layout(height=420, margin={"l": 60, "r": 60, "t": 60, "b": 30})
    return figure


def _pareto_front(data: ReportData) -> Any:
    """Several objectives: a scatter of the first two, the front's trials highlighted and joined by its staircase."""
    import plotly.graph_objects as go

    view = data.pareto
    if view is None:
        return None
    first, second = view.objectives[:2]
    figure = go.Figure()
    styles = {
        "other trials": {"color": "#a8b3bd", "size": 7},
        "breaks a constraint": {"color": "#9b5de5", "size": 7},
        "pruned (last values)": {"color": status_color(PRUNED), "symbol": "x", "size": 7},
    }
    for group in view.others:
        figure.add_scatter(
            x=group.xs,
            y=group.ys,
            text=[_hover(r, None) + _objectives_text(r, view.objectives) for r in group.records],
            hoverinfo="text",
            mode="markers",
            name=group.name,
            marker=styles.get(group.name, {}),
            opacity=0.7,
        )
    front = view.front
    figure.add_scatter(
        x=front.xs,
        y=front.ys,
        text=[_hover(r, None) + _objectives_text(r, view.objectives) for r in front.records],
        hoverinfo="text",
        mode="lines+markers",
        name=front.name,
        line={"color": "#1d3557", "width": 2, "shape": view.staircase},
        marker={"color": "#e63946", "size": 10, "line": {"color": "#1d3557", "width": 1}},
    )
    figure.update_layout(
        height=460,
        xaxis_title=f"{first.name} ({first.mode})",
        yaxis_title=f"{second.name} ({second.mode})",
        hovermode="closest",
    )
    return figure


def _objectives_text(record: TrialRecord, objectives: Any) -> str:
    values = [f"{o.name}={label(o.value(record.get('metrics')))}" for o in objectives]
    return "<br>" + "<br>".join(html.escape(v) for v in values)


def _importance(importances: dict[str, float]) -> Any:
    import plotly.graph_objects as go

    if not importances:
        return None
    names = sorted(importances, key=importances.__getitem__)
    figure = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", marker_color="#457b9d"))
    figure.update_layout(height=120 + 30 * len(names), margin={"t": 20, "b": 40}, xaxis_title="importance")
    return figure


def _segments(pieces: list[tuple[list[Any], list[Any], str]]) -> tuple[Any, Any, Any]:
    """Many lines as one trace: points joined, lines separated by gaps (one trace, not thousands).

    numpy arrays, not lists: plotly validates a list element by element (seconds for 10^5 points).
    """
    import numpy as np

    xs: list[Any] = []
    ys: list[Any] = []
    texts: list[Any] = []
    for x, y, text in pieces:
        xs += [*x, None]
        ys += [*y, None]
        texts += [text] * len(x) + [""]
    x_array = np.array(xs, dtype=float) if all(v is None or is_number(v) for v in xs) else np.array(xs, dtype=object)
    y_array = np.array(ys, dtype=float) if all(v is None or is_number(v) for v in ys) else np.array(ys, dtype=object)
    return x_array, y_array, np.array(texts, dtype=object)


def _learning_curves(data: ReportData) -> Any:
    import plotly.graph_objects as go

    if not data.curves:
        return None
    figure = go.Figure()
    groups = [(SUCCESS, "finished"), (PRUNED, "pruned"), (FAILURE, "failed")]
    for status, name in groups:
        curves = [c for c in data.curves if c.status == status]
        if not curves:
            continue
        xs, ys, texts = _segments([(c.steps, c.values, f"{c.trial} {c.status}") for c in curves])
        color = status_color(status)
        width = 1 if status == SUCCESS else 1.5
        figure.add_scatter(
            x=xs, y=ys, text=texts, mode="lines", name=name, line={"color": color, "width": width}, opacity=0.7
        )
        if status != SUCCESS:  # where each pruned / failed trial stopped
            figure.add_scatter(
                x=[c.steps[-1] for c in curves],
                y=[c.values[-1] for c in curves],
                text=[f"{c.trial} {c.status}" for c in curves],
                mode="markers",
                name=f"{name} (last step)",
                marker={"symbol": "x", "size": 9, "color": color},
            )
    best = next((c for c in data.curves if data.ranked and c.trial == data.ranked[0].get("trial")), None)
    if best is not None and best.status == SUCCESS:
        figure.add_scatter(
            x=best.steps,
            y=best.values,
            mode="lines",
            name=f"best ({best.trial})",
            line={"width": 3, "color": "#1d3557"},
        )
    figure.update_layout(height=420, xaxis_title="step", yaxis_title=data.curve_metric, hovermode="closest")
    return figure


def _timeline(data: ReportData) -> Any:
    import plotly.graph_objects as go

    if not data.slots or data.span is None:
        return None
    origin = data.span[0]
    figure = go.Figure()
    names = [f"{slot.label} ({slot.busy_fraction:.0%} busy)" for slot in data.slots]
    by_status: dict[str, list[tuple[list[Any], list[Any], str]]] = {}
    for slot, name in zip(data.slots, names):
        for run in slot.runs:
            text = f"{run.trial} {run.status} {run.end - run.start:.3g}s"
            by_status.setdefault(run.status, []).append(([run.start - origin, run.end - origin], [name, name], text))
    width = max(3, min(14, 300 // max(len(names), 1)))
    for status, pieces in sorted(by_status.items()):
        xs, ys, texts = _segments(pieces)
        figure.add_scatter(
            x=xs, y=ys, text=texts, mode="lines", name=status, line={"color": status_color(status), "width": width}
        )
    figure.update_layout(
        height=max(220, 80 + 22 * len(names)),
        xaxis_title="seconds since the first trial started",
        yaxis={"categoryorder": "array", "categoryarray": names[::-1], "type": "category"},
        margin={"l": 20},
    )
    return figure


def _table(data: ReportData) -> str:
    metric = data.metric
    metric_names = [metric] if metric else []
    for record in data.ranked:
        metric_names += [m for m in record.get("metrics") or {} if m not in metric_names]
    params = [p.name for p in data.parameters]
    header = ["rank", "trial", "status", "host", "gpu", "duration_s", *params, *metric_names, *data.gpu_keys]
    rows = []
    for rank, record in enumerate(data.ranked[:TABLE_ROWS], 1):
        values: list[Any] = [rank, record.get("trial"), record.get("status"), record.get("host"), record.get("gpu")]
        values.append(record.get("duration_s"))
        values += [(record.get("params") or {}).get(name) for name in params]
        values += [metric_value(record, name) for name in metric_names]
        cells = []
        for value in values:
            shown = "" if value is None else (f"{value:.5g}" if isinstance(value, float) else str(value))
            sort_key = f' data-v="{value!r}"' if is_number(value) else ""
            cls = f' class="{html.escape(str(value))}"' if value in (SUCCESS, FAILURE, PRUNED) else ""
            cells.append(f"<td{sort_key}{cls}>{html.escape(shown)}</td>")
        cells += [f"<td>{html.escape(gpu_use_text(record, key))}</td>" for key in data.gpu_keys]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    more = len(data.ranked) - TABLE_ROWS
    note = (
        f'<p class="note">the best {TABLE_ROWS} of {len(data.ranked)}; all are in results.csv</p>' if more > 0 else ""
    )
    return (
        f'<div class="scroll"><table class="sortable" id="best-trials"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def _overview(data: ReportData) -> str:
    sweep = data.sweep
    summary = sweep.summary()
    best = sweep.best()
    status = sweep.status + (f" ({sweep.status_note})" if sweep.status_note else "")
    revision = sweep.meta.get("project_revision") or {}
    items = [
        ("project", sweep.meta.get("project")),
        ("kind", sweep.kind),
        ("status", status),
        (
            "trials",
            f"{summary['done']} done, {summary['failed']} failed, {summary['pruned']} pruned of {summary['total']}",
        ),
        ("started", sweep.meta.get("created_at")),
        ("duration", f"{summary['duration_s']:.1f} s" if summary["duration_s"] is not None else "?"),
        ("metric", f"{data.metric} ({data.mode})" if data.metric else "none reported"),
    ]
    if sweep.objectives:
        front = ", ".join(str(record["trial"]) for record in sweep.front())
        items.append(("objectives", ", ".join(map(str, sweep.objectives))))
        items.append(("Pareto front", front or "empty: no trial succeeded with every objective"))
    if sweep.constraints:
        items.append(("constraints", ", ".join(map(str, sweep.constraints))))
    if best is not None and data.metric and not sweep.objectives:
        params = " ".join(f"--{k}={label(v)}" for k, v in (best.get("params") or {}).items())
        items.append(("best", f"{label(metric_value(best, data.metric))} in {best.get('trial')}: {params}"))
    if isinstance(revision, dict) and revision.get("commit"):
        items.append(("git commit", f"{revision['commit']}{' (dirty)' if revision.get('dirty') else ''}"))
    for key in ("driver_host", "mlframework_version", "python", "parameters_file"):
        if sweep.meta.get(key):
            items.append((key.replace("_", " "), sweep.meta[key]))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return f'<table class="meta">{rows}</table>'


def figures(data: ReportData, importances: dict[str, float]) -> list[tuple[str, str, Any]]:
    """(id, title, plotly figure or None) of each figure of the page, in order (the Pareto front first, if any)."""
    objectives = data.sweep.objectives
    front: list[tuple[str, str, Any]] = []
    if len(objectives) > 1:
        title = f"Pareto front of {', '.join(map(str, objectives))}" + (
            " (the first two drawn)" if len(objectives) > 2 else ""
        )
        front = [("pareto-front", title, _pareto_front(data))]
    return [
        *front,
        ("metric-vs-parameters", f"{data.metric or 'metric'} against each parameter", _metric_vs_parameters(data)),
        ("parallel-coordinates", "parallel coordinates", _parallel_coordinates(data)),
        ("parameter-importance", "parameter importance", _importance(importances)),
        ("learning-curves", f"learning curves ({data.curve_metric or 'no history'})", _learning_curves(data)),
        ("timeline", "worker slots: timeline and busy fraction", _timeline(data)),
    ]


def render(data: ReportData, importances: dict[str, float], importance_note: str) -> str:
    """The whole page as one string."""
    import plotly.io as pio
    import plotly.offline

    sections = [f"<h2>best trials</h2>{_table(data)}"]
    for div_id, title, figure in figures(data, importances):
        if figure is None:
            body = '<p class="note">nothing to draw yet</p>'
        else:
            figure.update_layout(template="plotly_white")
            body = pio.to_html(
                figure, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG, validate=False
            )
        if div_id == "parameter-importance":
            body += f'<p class="note">{html.escape(importance_note)}</p>'
        if div_id == "learning-curves" and data.without_curve:
            shown = ", ".join(data.without_curve[:50]) + (" ..." if len(data.without_curve) > 50 else "")
            body += f'<p class="note">stopped before reporting any step: {html.escape(shown)}</p>'
        sections.append(f'<h2>{html.escape(title)}</h2><div class="figure" data-figure="{div_id}">{body}</div>')
    written = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    title = f"sweep {data.sweep.id}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{_overview(data)}"
        f'<p class="note">written {written} by mlframework from {html.escape(str(data.sweep.directory))}</p>'
        f"{''.join(sections)}<script>{_SORT_SCRIPT}</script>"
        f"<script>window.mlframeworkReport={json.dumps(_page_facts(data))};</script></body></html>"
    )


def _page_facts(data: ReportData) -> dict[str, Any]:
    """What the page says of itself to a script (tests read it): its trials, and the front's with several objectives."""
    facts: dict[str, Any] = {"trials": len(data.ranked)}
    if data.sweep.objectives:
        facts["front"] = [str(record["trial"]) for record in data.sweep.front()]
    return facts


def write(data: ReportData, importances: dict[str, float], note: str, path: Path) -> Path:
    """Write the page to ``path`` atomically (a browser refreshing it never reads half a page)."""
    write_text_atomic(path, render(data, importances, note), durable=False)  # rewritten while the sweep runs
    return path
