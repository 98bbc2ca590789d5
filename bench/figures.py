"""What the bench measures and how it is shown: figures, targets, the markdown table.

A :class:`Figure` is one system doing one scenario's work, measured ``--runs``
times (median, min, max). A :class:`Target` is a bar from issue 6, a ratio
between two figures of the same run (or one figure against a constant), so
that it holds on any machine. Figures that could not be measured keep the
reason instead of values and show it in the table.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    """One row of the table."""

    scenario: str  # e.g. "throughput"
    system: str  # e.g. "rabbitmq"; "scenario.system" is what --only selects
    label: str  # what ran, for the reader
    unit: str
    values: list[float] = field(default_factory=list)  # one per run
    note: str = ""  # sizes, caveats
    unavailable: str | None = None  # why it was not measured

    @property
    def key(self) -> str:
        return f"{self.scenario}.{self.system}"

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass
class Target:
    """A bar the figure ``numerator`` must clear: ``numerator / denominator`` (or the figure) vs ``bound``."""

    numerator: str  # a figure key
    denominator: str | None  # a figure key, or None to compare the figure itself
    op: str  # ">=" or "<="
    bound: float
    text: str  # e.g. ">= 4x plain Celery"
    invert: bool = False  # compare denominator / numerator (for times where the issue speaks of rates)

    def measured(self, figures: dict[str, Figure]) -> float | None:
        top = figures.get(self.numerator)
        if top is None or top.median is None:
            return None
        if self.denominator is None:
            return top.median
        bottom = figures.get(self.denominator)
        if bottom is None or bottom.median is None or bottom.median == 0 or top.median == 0:
            return None
        if math.isinf(bottom.median):  # the reference never got there (a search that never matched): no ratio
            return None
        return bottom.median / top.median if self.invert else top.median / bottom.median

    def met(self, figures: dict[str, Figure]) -> bool | None:
        value = self.measured(figures)
        if value is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound


def fmt(value: float | None) -> str:
    """Three significant digits, no exponent for the sizes seen here."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


def _ratio_text(target: Target, figures: dict[str, Figure]) -> str:
    value = target.measured(figures)
    if value is None:
        return "n/a"
    return fmt(value) if target.denominator is None else f"{fmt(value)}x"


def _met_text(target: Target, figures: dict[str, Figure]) -> str:
    met = target.met(figures)
    return "n/a" if met is None else ("yes" if met else "**no**")


def markdown(figures: list[Figure], targets: list[Target], runs: int) -> str:
    """The table: one row per figure, its targets (if any) in the last three columns."""
    by_key = {figure.key: figure for figure in figures}
    lines = [
        "| scenario | system | median | min | max | unit | target | measured | met? |",
        "|:--|:--|--:|--:|--:|:--|:--|--:|:--|",
    ]
    for figure in figures:
        own = [target for target in targets if target.numerator == figure.key]
        if figure.unavailable is not None:
            cells = ["-", "-", "-", figure.unit, "; ".join(t.text for t in own) or "", "", "n/a" if own else ""]
            label = f"{figure.label} — {figure.unavailable}"
        else:
            cells = [
                fmt(figure.median),
                fmt(min(figure.values)),
                fmt(max(figure.values)),
                figure.unit,
                "; ".join(t.text for t in own),
                "; ".join(_ratio_text(t, by_key) for t in own),
                "; ".join(_met_text(t, by_key) for t in own),
            ]
            label = figure.label + (f" ({figure.note})" if figure.note else "")
        lines.append("| " + " | ".join([figure.scenario, label, *cells]) + " |")
    lines.append("")
    lines.append(f"Median of {runs} run(s) each; min and max over the runs. Ratios are of medians from this run.")
    return "\n".join(lines) + "\n"


def as_json(figures: list[Figure], targets: list[Target], meta: dict[str, Any]) -> str:
    by_key = {figure.key: figure for figure in figures}
    return json.dumps(
        {
            "meta": meta,
            "figures": [{**asdict(f), "key": f.key, "median": f.median} for f in figures],
            "targets": [{**asdict(t), "measured": t.measured(by_key), "met": t.met(by_key)} for t in targets],
        },
        indent=2,
    )
