"""This machine's side of a cluster spec: ``config.sh`` read and written, the project directory found.

``config.sh`` is a tracked file of ``NAME="value"`` lines (the format of
:mod:`mlframework.cluster.envfile`): data, never sourced here, and never with
secrets in it (see :mod:`mlframework.cluster.secrets`). :func:`save_config`
opens it with a comment saying what each key means, and replaces it
atomically. :func:`find_project` is where ``-d`` is looked up on this machine,
the one check of a :class:`~mlframework.cluster.spec.ClusterSpec` that needs
the file system.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from mlframework.cluster import envfile
from mlframework.cluster.hosts import said
from mlframework.cluster.spec import CONFIG_KEYS, OPTIONS, ClusterSpec
from mlframework.exceptions import ConfigError
from mlframework.system.fileio import write_text_atomic

# A -d that names a project under projects/ rather than a path.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def load_config(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``config.sh`` (see :func:`mlframework.cluster.envfile.parse_config`); it is never executed."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run infrainit once without -f to write it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return envfile.decode(data, str(path))


def config_header(keys: Iterable[str]) -> list[str]:
    """The comment that opens a generated config.sh: what it is and what each key means."""
    meaning = {key: (OPTIONS[name][0], OPTIONS[name][2]) for name, key in CONFIG_KEYS.items()}
    lines = [
        "infrainit options, written by scripts/infrainit.sh; reuse them with `infrainit.sh -f`.",
        'Data, not a script: mlframework parses these NAME="value" lines and never runs them.',
        "No secrets here (this file is tracked); they live in .mlframework/secrets.env.",
        "",
    ]
    for key in keys:
        if key in meaning:
            option, text = meaning[key]
            lines.append(f"  {key:<21} {option:<23} {text}")
    return lines


def save_config(path: str | os.PathLike[str], mapping: Mapping[str, str]) -> None:
    """Write ``config.sh``: a header comment, then ``NAME="value"`` lines (atomically, its mode kept)."""
    write_text_atomic(path, envfile.format_config(mapping, config_header(mapping)))


def find_project(
    spec: ClusterSpec, repo_root: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None
) -> Path:
    """The project directory of ``spec``: ``projects/<name>`` for a plain name, else a path.

    A relative path is taken from ``cwd`` (default: the current directory).
    ConfigError when it does not exist, or holds neither a ``tasks.py`` nor a parameters
    file that gives its command (``mlframework: command:``).
    """
    projects = Path(repo_root) / "projects"
    if _PLAIN_NAME.fullmatch(spec.project):
        path = projects / spec.project
    else:
        path = Path(spec.project).expanduser()
        if not path.is_absolute():
            path = Path(cwd if cwd is not None else Path.cwd()) / path
    if not path.is_dir():
        known = sorted(p.parent.name for p in projects.glob("*/tasks.py"))
        hint = f" (projects: {', '.join(known)})" if known else ""
        raise ConfigError(f"{said('-d', spec.project)}: no project directory {path}{hint}")
    if not (path / "tasks.py").is_file() and not _gives_command(path):
        raise ConfigError(
            f"{said('-d', spec.project)}: {path} has no tasks.py and no parameters file that gives a command; "
            "a project defines its tasks in tasks.py (see projects/mnist) or gives its command in a parameters "
            "file (mlframework: command: ..., see docs/your-own-script.md)"
        )
    return path.resolve()


def _gives_command(project: Path) -> bool:
    """Whether a YAML file at the top of ``project`` gives a command (its ``mlframework:`` section)."""
    from mlframework.exceptions import GridError
    from mlframework.sweep.params.settings import load_command

    for path in sorted([*project.glob("*.yml"), *project.glob("*.yaml")]):
        try:
            if load_command(path) is not None:
                return True
        except GridError:
            continue  # a file with mistakes in it: the sweep that reads it says what they are
    return False
