"""Steps run on many hosts at once: per-host outcomes, one aggregate error naming the failed hosts.

:func:`on_hosts` runs one action per host (or per session) in parallel, so a
step takes about as long on ten hosts as on one, and raises one
:class:`~mlframework.exceptions.HostsFailed` that names every host that failed
and why (fabric's ``GroupResult`` / ``GroupException`` habit).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mlframework.cluster import diagnose
from mlframework.cluster.hosts import Host
from mlframework.cluster.ssh.channels import channel_refused, is_channel_refusal
from mlframework.exceptions import HostError, HostsFailed

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class HostOutcome:
    """One host's result of a parallel step."""

    host: Host
    value: Any = None
    error: BaseException | None = None


def hosts_failed(step: str, failures: Sequence[HostOutcome]) -> HostsFailed:
    """The aggregate error of a step that failed on ``failures``: one line per host, naming it and why."""
    return HostsFailed(step, [(str(outcome.host), _reason(outcome, step)) for outcome in failures])


def _reason(outcome: HostOutcome, step: str) -> str:
    error = outcome.error
    if isinstance(error, HostError):
        return str(error)
    if error is not None and is_channel_refusal(error):
        return str(channel_refused(str(outcome.host), step))
    assert error is not None
    # A paramiko or docker SDK fault: one line naming host and step, the traceback in a log file.
    return diagnose.record_unexpected(str(outcome.host), step, error)


def on_hosts(step: str, items: Sequence[T], action: Callable[[T], Any], max_workers: int = 16) -> list[Any]:
    """Run ``action`` on every item (a host or a session) at once; results in input order.

    Raises :class:`HostsFailed` naming every host that failed and why.
    """
    if not items:
        return []
    outcomes: list[HostOutcome | None] = [None] * len(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        futures = {pool.submit(action, item): index for index, item in enumerate(items)}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            target: Any = getattr(items[index], "host", items[index])
            try:
                outcomes[index] = HostOutcome(target, future.result())
            except Exception as exc:
                log.debug("%s failed on %s", step, target, exc_info=True)
                outcomes[index] = HostOutcome(target, error=exc)
    done = [outcome for outcome in outcomes if outcome is not None]
    failures = [outcome for outcome in done if outcome.error is not None]
    if failures:
        raise hosts_failed(step, failures)
    return [outcome.value for outcome in done]
