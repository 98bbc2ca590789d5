"""Errors a user can fix, each naming the file, parameter or host at fault.

The CLI turns every :class:`MLFrameworkError` into one line on stderr and exit
status 2; anything else is a bug and keeps its traceback. A message's lines
after the first, if any, are its cause (the last lines of a worker's log or of
a traceback in the user's tasks.py), shown indented under it.

    MLFrameworkError
     ├── ConfigError      options, config.sh, project layout, broker settings
     ├── GridError        parameters.yml (file, parameter and line in the message)
     ├── HostError        a host that cannot be reached or used (host in the message)
     ├── ServiceError     RabbitMQ, Flower or a worker that does not come up or answer
     └── SweepError       a sweep that cannot be started, resumed or followed
"""

from __future__ import annotations


class MLFrameworkError(Exception):
    """Base of every error a user can fix; its message's first line says it all (what follows is the cause)."""


class ConfigError(MLFrameworkError):
    """Bad options, configuration file or project layout."""


class GridError(MLFrameworkError):
    """A parameters.yml that cannot be turned into combinations."""


class HostError(MLFrameworkError):
    """A host that cannot be reached or used.

    ``host`` names it so that aggregate errors can list the failed hosts.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


class ServiceError(MLFrameworkError):
    """A service (broker, workers, Flower) that does not come up or answer."""


class SweepError(MLFrameworkError):
    """A sweep that cannot be started, resumed or followed."""
