"""Checks made before anything is sent: the project's tasks.py imports, with the cause shown when it does not."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from mlframework.exceptions import ConfigError
from mlframework.sweep.trials.project import import_project_tasks

TRACEBACK_LINES = 12  # of the cause's traceback, shown under the error's first line


def cause_tail(exc: BaseException, lines: int = TRACEBACK_LINES) -> str:
    """The last lines of ``exc``'s traceback (where it was raised and why), for an error message."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])


def check_importable(project_dir: str | os.PathLike[str]) -> None:
    """Import ``PROJECT_DIR/tasks.py`` here; raise :class:`ConfigError` with the traceback's tail when it fails.

    For embedded mode, whose workers run this very Python: an ImportError
    there is the workers' too, so it is an error, not a skipped check.
    """
    path = Path(project_dir).resolve() / "tasks.py"
    try:
        import_project_tasks(project_dir)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: importing it failed: {type(exc).__name__}: {exc}\n{cause_tail(exc)}") from None
