"""The sweep report: one self-contained HTML page (plotly) and PNGs (matplotlib) from a sweep directory.

:mod:`.data` turns a sweep's records into what the figures show (pure, no plotting library),
:mod:`.importance` ranks parameters (Optuna's fANOVA), :mod:`.html` and :mod:`.png` draw,
:mod:`.live` keeps ``results/<id>/report.html`` current while the driver runs.
"""

from __future__ import annotations

from mlframework.exceptions import ConfigError

INSTALL_HINT = "pip install 'mlframework[report]'"


class ReportDependencyMissing(ConfigError):
    """The report's plotting libraries are not installed."""


def require(module: str) -> None:
    """Import ``module`` or raise :class:`ReportDependencyMissing` naming the extra to install."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise ReportDependencyMissing(f"the report needs {module}, which is not installed: {INSTALL_HINT}") from None
