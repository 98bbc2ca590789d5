"""Whether a sweep recorded as ``running`` still has a driver: for listings and ``--resume``.

A driver killed with SIGKILL cannot write its own end. In embedded mode its
watchdog marks the sweep interrupted; where nothing did (the watchdog killed
too, a driver of an earlier version, a cluster driver whose machine rebooted),
:func:`effective_status` tells from ``driver_host`` and ``driver_pid`` in
sweep.json, for a driver on this machine: a dead pid means ``interrupted``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any


def driver_alive(meta: Mapping[str, Any]) -> bool | None:
    """True/False for a driver recorded on this machine, None when that cannot be told here."""
    pid = meta.get("driver_pid")
    if meta.get("driver_host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def effective_status(meta: Mapping[str, Any]) -> str:
    """The sweep's status as recorded, except ``interrupted`` for a running one whose driver is gone."""
    status = str(meta.get("status") or "unknown")
    if status == "running" and driver_alive(meta) is False:
        return "interrupted"
    return status
