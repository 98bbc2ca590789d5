"""A project directory and its ``tasks.py``, as workers and the driver load them."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from mlframework.exceptions import ConfigError


def import_project_tasks(project_dir: str | os.PathLike[str]) -> ModuleType:
    """Import ``PROJECT_DIR/tasks.py`` as the module ``tasks`` (its tasks register themselves)."""
    directory = Path(project_dir).resolve()
    path = directory / "tasks.py"
    if not path.is_file():
        raise ConfigError(
            f"{path}: no tasks.py in the project directory (or give the command in the parameters file: "
            "mlframework: command: ...)"
        )
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    existing = sys.modules.get("tasks")
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path:
        return existing
    spec = importlib.util.spec_from_file_location("tasks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tasks"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["tasks"]  # a half-imported module must not pass the next check
        raise
    return module
