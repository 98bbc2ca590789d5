"""Names of sweeps, trials and their Celery tasks: made, checked and formatted in one place."""

from __future__ import annotations

import datetime as _dt
import re
import secrets

from mlframework.exceptions import ConfigError


def new_sweep_id(project_name: str) -> str:
    """A sortable, unique sweep id: ``YYYYmmdd-HHMMSS-<project>-<4 hex>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in project_name) or "sweep"
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


_SWEEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def check_sweep_id(sweep_id: str) -> str:
    """A sweep id names a directory and a container: letters, digits, '.', '_', '-'."""
    if not _SWEEP_ID.match(sweep_id):
        raise ConfigError(f"sweep id {sweep_id!r}: use letters, digits, '.', '_' and '-' only")
    return sweep_id


def trial_id(index: int, total: int) -> str:
    """``t0007``: zero-padded so ids sort in grid order."""
    return f"t{index:0{max(4, len(str(max(total - 1, 0))))}d}"


def task_id(sweep_id: str, trial: str, attempt: int = 1) -> str:
    """The Celery task id of one attempt of a trial (``revoke`` and ``inspect`` name it)."""
    return f"{sweep_id}.{trial}" if attempt == 1 else f"{sweep_id}.{trial}.a{attempt}"
