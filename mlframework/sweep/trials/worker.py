"""The Celery app a worker process runs: ``celery -A mlframework.sweep.trials.worker worker``.

The broker comes from ``MLFRAMEWORK_BROKER_URL`` (see :mod:`mlframework.sweep.wire.app`)
and the tasks from the ``tasks.py`` of the project directory named by
``MLFRAMEWORK_PROJECT``; the project directory is put first on ``sys.path`` so
its own modules import as they would when run by hand. A project with no tasks.py
gives its command in the parameters file: every worker has the built-in task that runs
it (:mod:`mlframework.sweep.trials.file_task`), tasks.py or not. Its consumer runs the
:class:`~mlframework.sweep.trials.lease.TrialLease` bootstep, which keeps long trials
from being cut by the broker's ``consumer_timeout``.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

import mlframework.sweep.trials.file_task  # (registers the built-in command task)
import mlframework.sweep.wire.control  # noqa: F401  (registers the worker's stop-trials command)
from mlframework.exceptions import ConfigError
from mlframework.sweep.trials.lease import TrialLease
from mlframework.sweep.trials.project import import_project_tasks
from mlframework.sweep.trials.trial import ENV_PROJECT
from mlframework.sweep.wire.app import ENV_BROKER_URL, BrokerSettings, create_app


def _build_app() -> Celery:
    broker = BrokerSettings.from_env()
    if broker is None:
        raise ConfigError(f"{ENV_BROKER_URL} is not set: the worker does not know its broker")
    application = create_app(broker)
    # Long trials outlive the broker's consumer_timeout (see sweep/trials/lease.py).
    application.steps["consumer"].add(TrialLease)
    project = os.environ.get(ENV_PROJECT)
    if project and (Path(project) / "tasks.py").is_file():
        import_project_tasks(project)
    return application


app = _build_app()
