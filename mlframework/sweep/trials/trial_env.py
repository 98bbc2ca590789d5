"""What a trial's command finds around it: its own directory, and its share of the CPUs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mlframework import envvars

ENV_SLOTS = envvars.SLOTS  # trials one worker runs at once (set by embedded mode's workers)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def workdir(sweep_dir: str | None, sweep_id: str, trial: str) -> Path:
    """The trial's own directory, made if need be: under the sweep's directory where this machine sees it."""
    if sweep_dir and Path(sweep_dir).is_dir():
        directory = Path(sweep_dir) / "work" / trial
    else:
        directory = Path(tempfile.gettempdir()) / "mlframework-work" / sweep_id / trial
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def remove_if_empty(directory: Path) -> None:
    """Remove a trial directory its command wrote nothing to.

    Not its parent, even when empty: another trial may be making its own directory in it right now.
    """
    with contextlib.suppress(OSError):
        directory.rmdir()


def thread_limits(environ: Mapping[str, str]) -> dict[str, str]:
    """``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for a command: the CPUs divided by the trials run at once.

    Without them torch/numpy start a thread per CPU in every trial, and two
    trials on two slots oversubscribe the cores. A value the user set wins.
    """
    try:
        slots = int(environ.get(ENV_SLOTS, ""))
    except ValueError:
        return {}
    share = max(1, (os.cpu_count() or 1) // max(1, slots))
    return {name: str(share) for name in THREAD_VARIABLES if name not in environ}
