"""The ``celery`` command lines of the cluster's processes: the same worker in a container or in embedded mode.

One spelling of the Celery app module and of a worker's options, used by the
worker and Flower containers (:mod:`mlframework.cluster.services`) and by
embedded mode's local workers (:mod:`mlframework.cluster.embedded.workers`).
"""

from __future__ import annotations

from collections.abc import Sequence

#: The module that holds the workers' Celery app (``celery -A``).
WORKER_APP = "mlframework.sweep.trials.worker"


def celery_command(*args: str, python: str | None = None) -> list[str]:
    """``celery -A <app> ARGS...``; with ``python``, run as ``PYTHON -m celery`` (this machine's interpreter)."""
    prefix = [python, "-m", "celery"] if python else ["celery"]
    return [*prefix, "-A", WORKER_APP, *args]


def worker_command(node: str, concurrency: int, *, python: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """A Celery worker named ``node`` with ``concurrency`` pool processes, logging at INFO.

    ``--without-gossip``: workers need not watch each other's events (the
    driver follows its own event queue); ``extra`` adds options (embedded
    mode: no mingle, no heartbeat).
    """
    return celery_command(
        "worker",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--hostname",
        node,
        "--concurrency",
        str(concurrency),
        *extra,
        python=python,
    )
