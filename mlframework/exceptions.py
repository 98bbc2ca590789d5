"""Errors a user can fix, each naming the file, parameter or host at fault.

The CLI turns every :class:`MLFrameworkError` into one line on stderr and exit
status 2; anything else is a bug and keeps its traceback. A message's lines
after the first, if any, are its cause (the last lines of a worker's log or of
a traceback in the user's tasks.py), shown indented under it.

    MLFrameworkError
     ├── ConfigError      options, config.sh, project layout, broker settings
     ├── GridError        parameters.yml (file, parameter and line in the message)
     ├── HostError        a host that cannot be reached or used (host in the message)
     │    └── HostsFailed a step that failed on some hosts of many (each host and why)
     ├── ServiceError     RabbitMQ, Flower or a worker that does not come up or answer
     └── SweepError       a sweep that cannot be started, resumed or followed
"""

from __future__ import annotations

from collections.abc import Sequence


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

    def __init__(self, host: str, reason: str, *, message: str | None = None) -> None:
        """``host: reason``, unless ``message`` says it otherwise (an aggregate of several hosts)."""
        super().__init__(message if message is not None else f"{host}: {reason}")
        self.host = host
        self.reason = reason


class HostsFailed(HostError):
    """A step failed on some of the hosts it ran on; names each one and why (fabric's GroupException habit).

    ``failures`` holds ``(host, reason)`` per failed host, the reason a one-line
    message that names the host itself; :attr:`host` lists the failed hosts.
    """

    def __init__(self, step: str, failures: Sequence[tuple[str, str]]) -> None:
        self.step = step
        self.failures = tuple(failures)
        reasons = "; ".join(reason for _, reason in self.failures)
        super().__init__(
            ", ".join(host for host, _ in self.failures),
            reasons,
            message=f"{step} failed on {len(self.failures)} host(s): {reasons}",
        )


class ServiceError(MLFrameworkError):
    """A service (broker, workers, Flower) that does not come up or answer."""


class SweepError(MLFrameworkError):
    """A sweep that cannot be started, resumed or followed."""
