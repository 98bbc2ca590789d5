"""Atomic file replacement: a reader sees the old file or the new one, never half of either.

Every file mlframework rewrites while something may read it (``config.sh``,
the secrets file, ``sweep.json``, ``results.csv``, the report page, a running
trial's registry entry) goes through :func:`atomic_open` or
:func:`write_text_atomic`: the text goes to a temporary file in the same
directory (so the rename stays on one file system), which then replaces the
target in one :func:`os.replace`. With ``durable`` the data is fsynced before
the rename, so a machine that crashes right after leaves the new contents, not
an empty file.

Temporary files are named ``.<name>.<pid>.<random>.tmp``: hidden, and
recognisable per writing process (:func:`temporary_files`) should one be
killed mid-write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: Mode of a new file when the caller gives none and no file is replaced (rw-r--r--).
DEFAULT_MODE = 0o644


def temporary_files(path: str | os.PathLike[str], pid: int | None = None) -> list[Path]:
    """The temporary files :func:`atomic_open` left beside ``path`` (of process ``pid``, or any)."""
    target = Path(path)
    who = "*" if pid is None else str(pid)
    return sorted(target.parent.glob(f".{target.name}.{who}.*.tmp"))


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    *,
    mode: int | None = None,
    durable: bool = True,
    newline: str | None = None,
    exclusive: bool = False,
) -> Iterator[IO[str]]:
    """A text handle whose contents replace ``path`` when the ``with`` block ends without an error.

    ``mode`` is the new file's permission bits (default: those of the file
    replaced, else :data:`DEFAULT_MODE`); the temporary file has them from the
    start, since it is created 0600 and changed before anything is written.
    ``durable`` fsyncs before the rename. With ``exclusive`` an existing
    ``path`` is left alone (the new file is hard-linked into place, never
    overwriting): :class:`FileExistsError` says so. On an error nothing
    changes and the temporary file is removed.
    """
    target = Path(path)
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = DEFAULT_MODE
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, target)
        else:
            os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_text_atomic(
    path: str | os.PathLike[str],
    text: str,
    *,
    mode: int | None = None,
    durable: bool = True,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` by ``text`` in one rename (see :func:`atomic_open` for the options)."""
    with atomic_open(path, mode=mode, durable=durable, exclusive=exclusive) as handle:
        handle.write(text)
