"""``mlframework report``'s library call: a sweep directory in, report.html (and PNGs) out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlframework.report import require
from mlframework.report.data import build
from mlframework.sweep.records.catalog import Sweep

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


@dataclass
class ReportOutput:
    html: Path | None
    pngs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    importance_note: str = ""


def write_report(
    sweep: Sweep, output: Path | None = None, png_dir: Path | None = None, html: bool = True
) -> ReportOutput:
    """Write ``output`` (default ``<sweep dir>/report.html``) and, with ``png_dir``, a PNG per figure."""
    started = time.perf_counter()
    require("plotly") if html else None
    if png_dir is not None:
        require("matplotlib")
    data = build(sweep)
    from mlframework.report.importance import parameter_importance

    importances, note = parameter_importance(data)
    written = ReportOutput(None, importance_note=note)
    if html:
        from mlframework.report import html as page

        target = output or sweep.directory / REPORT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        written.html = page.write(data, importances, note, target)
    if png_dir is not None:
        from mlframework.report import png

        written.pngs = png.write_all(data, importances, png_dir)
    written.seconds = time.perf_counter() - started
    log.info("report of %s written in %.2f s", sweep.id, written.seconds)
    return written
