"""The Celery app every sweep and worker uses, and how its broker is chosen.

A project's ``tasks.py`` never names a broker: the framework builds the app
from :class:`BrokerSettings`, which travel to worker processes and containers
through environment variables (``MLFRAMEWORK_BROKER_URL`` and
``MLFRAMEWORK_TRANSPORT_OPTIONS``). The defaults are chosen for sweeps, where a
trial may run for hours and must be neither lost nor run twice:

* JSON only: pickle is refused, so a message on the queue can never run code;
* late acknowledgement and re-queue when a worker dies mid-trial; a trial
  that runs longer than a lease (``mlframework_lease_seconds``, 10 minutes) is
  acknowledged early, before the broker's ``consumer_timeout`` would cut it,
  and the driver sends it again if its worker dies (see ``sweep/trials/lease.py``);
* one message prefetched per worker process, so long trials do not wait
  behind a busy process while another one idles;
* results travel through a per-sweep event queue (see ``sweep/wire/events.py``),
  not through a Celery result backend.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from mlframework import envvars
from mlframework.exceptions import ConfigError
from mlframework.sweep.wire import fs_transport

# Embedded mode's mlfs:// broker, wherever an app is made (driver and worker processes alike).
fs_transport.register()

ENV_BROKER_URL = envvars.BROKER_URL
ENV_TRANSPORT_OPTIONS = envvars.TRANSPORT_OPTIONS
ENV_CELERY_CONFIG = envvars.CELERY_CONFIG

#: Celery setting: seconds a trial runs before its worker acknowledges it early
#: (``sweep/trials/lease.py``); 0 turns leases off. It must stay below the broker's
#: ``consumer_timeout``, with room to spare (infra/rabbitmq/rabbitmq.conf says
#: how the two relate).
LEASE_SETTING = "mlframework_lease_seconds"

#: The queue trials wait in. Named so that it never mixes with another Celery
#: application's default ``celery`` queue on a shared broker.
TRIAL_QUEUE = "mlframework.trials.fair"
#: Its message priorities: 0 for a sweep's backlog, 1 for the trials fair share puts first in line
#: (sweep/driver/fairshare.py). A queue's priorities are fixed when it is declared, hence the queue's new
#: name: an older broker's ``mlframework.trials``, declared without them, is left alone.
TRIAL_QUEUE_MAX_PRIORITY = 1


def trial_queue() -> Queue:
    """The trial queue as every app declares it (drivers and workers alike)."""
    return Queue(
        TRIAL_QUEUE,
        Exchange(TRIAL_QUEUE, "direct"),
        routing_key=TRIAL_QUEUE,
        queue_arguments={"x-max-priority": TRIAL_QUEUE_MAX_PRIORITY},
    )


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to talk to it."""

    url: str  # kombu URL: amqp://user:pass@host:5672/vhost, or mlfs:// (files) in embedded mode
    transport_options: Mapping[str, Any] = field(default_factory=dict)  # kombu transport options
    celery_config: Mapping[str, Any] = field(default_factory=dict)  # overrides of sweep_defaults()

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a worker process use this broker."""
        env = {ENV_BROKER_URL: self.url}
        if self.transport_options:
            env[ENV_TRANSPORT_OPTIONS] = json.dumps(dict(self.transport_options))
        if self.celery_config:
            env[ENV_CELERY_CONFIG] = json.dumps(dict(self.celery_config))
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerSettings | None:
        """Settings from the environment, or None when no broker is named there."""
        environ = os.environ if environ is None else environ
        url = environ.get(ENV_BROKER_URL)
        if not url:
            return None
        return cls(
            url=url,
            transport_options=_json_env(environ, ENV_TRANSPORT_OPTIONS),
            celery_config=_json_env(environ, ENV_CELERY_CONFIG),
        )

    def redacted_url(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        from kombu.utils.url import maybe_sanitize_url

        return str(maybe_sanitize_url(self.url))


def _json_env(environ: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = environ.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"environment variable {name} must hold a JSON object")
    return value


def sweep_defaults() -> dict[str, Any]:
    """Celery settings fit for sweeps (see the module docstring for the why)."""
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A trial that failed raises after its record went out (sweep/wire/outcome.py): acknowledged, never redelivered.
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # A pool process killed mid-trial (out of memory): its trial goes back to the queue after this
        # wait, not Celery's 10 s. The wait is for a result already in the pipe; ours travel as events.
        "worker_lost_wait": 1.0,
        # 10 minutes: below RabbitMQ's default consumer_timeout (30 minutes) with room to spare.
        LEASE_SETTING: 600.0,
        "task_ignore_result": True,
        "task_default_queue": TRIAL_QUEUE,
        "task_queues": (trial_queue(),),
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Flower and `celery events` need task events; they cost one small message per state change.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def create_app(broker: BrokerSettings, main: str = "mlframework") -> Celery:
    """A Celery app talking to ``broker`` with :func:`sweep_defaults`."""
    app = Celery(main, set_as_current=False)
    config = sweep_defaults()
    config["broker_url"] = broker.url
    config["broker_transport_options"] = dict(broker.transport_options)
    config.update(broker.celery_config)
    app.conf.update(config)
    return app
