"""The broker's accounts converge on the secrets file: its user, password, vhost and permissions, every infrainit.

RabbitMQ creates ``RABBITMQ_DEFAULT_USER`` only on the first boot of an empty
data volume. The volume (``<cluster>-broker-data``) outlives the container, so a
broker started again after ``infra_clean.sh`` - or from a fresh clone, or after
the secrets file was deleted - would keep the old password and refuse the new
one. So after the container is up, :func:`converge_accounts` sets the accounts
with ``rabbitmqctl`` inside the container (over the same docker API): the user
of the secrets file with its password (created or changed), tagged as ours, its
vhost with full permissions on it, every other user of ours (the tag, or a
``mlf-`` name) that had access to that vhost deleted, and ``guest`` deleted.
Each step is idempotent: an unchanged cluster sees the same accounts afterwards.

The broker is shared by every project whose master is that host: each has its
own user and vhost, and converging one never touches another's.
:func:`remove_account` removes one project's vhost and users
(``infra-clean --volumes``).

:func:`wait_for_login` then logs in with the credentials the workers will use;
a refused login is final (``ACCESS_REFUSED`` is not "not up yet") and is
reported at once, naming the host and the likely cause.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.connection import Connection

from mlframework.cluster import diagnose
from mlframework.cluster.secrets import ClusterSecrets
from mlframework.exceptions import HostError, ServiceError

log = logging.getLogger(__name__)

#: Tag on every RabbitMQ user mlframework made; users with it that the secrets file does not name are stale.
USER_TAG = "mlframework"
#: Names our generated users have (ClusterSecrets.generate), for users made before the tag existed.
USER_PREFIX = "mlf-"
# Seconds rabbitmqctl may wait for the node to boot (a first boot initialises the data volume).
STARTUP_TIMEOUT = 180
# Lines of the broker's log shown when it fails.
LOG_LINES = 15


def _ctl(container: Any, host: str, args: list[str], timeout: int = 60, secret: str | None = None) -> str:
    """Run ``rabbitmqctl ARGS`` in the broker container; HostError with its last line if it fails.

    ``secret`` (a password among ``args``) is shown as ``***`` in the error.
    """
    command = ["rabbitmqctl", "--timeout", str(timeout), *args]
    # As user rabbitmq with its HOME: where the node's Erlang cookie is, in the official image and Debian's.
    result = container.exec_run(command, user="rabbitmq", environment={"HOME": "/var/lib/rabbitmq"})
    output = result.output.decode(errors="replace") if result.output else ""
    if result.exit_code != 0:
        shown = " ".join("***" if a == secret else a for a in args)
        last = [line for line in output.splitlines() if line.strip()]
        raise HostError(
            host, f"`rabbitmqctl {shown}` in the broker exited {result.exit_code}: {last[-1] if last else ''}"
        )
    return output


def broker_log_tail(container: Any, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of the broker container's log (empty if it cannot be read)."""
    return diagnose.container_tail(container, lines)


def wait_for_node(container: Any, host: str, timeout: int = STARTUP_TIMEOUT) -> None:
    """Wait until the RabbitMQ node in ``container`` runs; ServiceError with its last log lines otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            raise ServiceError(
                f"{host}: the broker container {container.name} exited ({container.attrs['State'].get('ExitCode')}); "
                f"its last log lines:\n{broker_log_tail(container)}"
            )
        result = container.exec_run(
            ["rabbitmqctl", "--timeout", "10", "await_startup"],
            user="rabbitmq",
            environment={"HOME": "/var/lib/rabbitmq"},
        )
        if result.exit_code == 0:
            return
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{host}: the broker did not start within {timeout}s; its last log lines:\n{broker_log_tail(container)}"
            )
        time.sleep(1)


def _users(container: Any, host: str) -> dict[str, set[str]]:
    """``user -> tags`` of the broker."""
    users: dict[str, set[str]] = {}
    for line in _ctl(container, host, ["list_users", "--quiet", "--no-table-headers"]).splitlines():
        parts = line.split("\t")
        if not parts or not parts[0].strip() or parts[0].startswith("Listing"):
            continue
        tags = parts[1].strip().strip("[]") if len(parts) > 1 else ""
        users[parts[0].strip()] = {t.strip() for t in tags.split(",") if t.strip()}
    return users


def converge_accounts(container: Any, host: str, secrets: ClusterSecrets) -> list[str]:
    """Make the broker's accounts those of ``secrets`` (see the module docstring); returns the stale users removed."""
    user, vhost = secrets.rabbitmq_user, secrets.rabbitmq_vhost
    users = _users(container, host)
    # "--": a password may begin with "-" (token_urlsafe's alphabet has it), which rabbitmqctl would take for options.
    account = ["--", user, secrets.rabbitmq_password]
    if user in users:
        _ctl(container, host, ["change_password", *account], secret=secrets.rabbitmq_password)
    else:
        _ctl(container, host, ["add_user", *account], secret=secrets.rabbitmq_password)
    # administrator: the management UI (on the master's loopback) takes these credentials.
    _ctl(container, host, ["set_user_tags", user, USER_TAG, "administrator"])
    vhosts = {line.strip() for line in _ctl(container, host, ["list_vhosts", "--quiet", "--no-table-headers"]).split()}
    if vhost not in vhosts:
        _ctl(container, host, ["add_vhost", vhost])
    # Users of ours that the vhost had before (an older clone's, say): not another project's, whose vhost differs.
    stale = sorted(name for name in _vhost_users(container, host, vhost) if name != user and _ours(name, users))
    _ctl(container, host, ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"])
    for name in stale:
        _ctl(container, host, ["delete_user", name])
    if stale:
        log.info("%s: removed stale broker user(s) %s", host, ", ".join(stale))
    if "guest" in users:  # the image's default account: no project uses it, and it would reach every vhost
        _ctl(container, host, ["delete_user", "guest"])
    return stale


def _ours(name: str, users: dict[str, set[str]]) -> bool:
    return name in users and (USER_TAG in users[name] or name.startswith(USER_PREFIX))


def _vhost_users(container: Any, host: str, vhost: str) -> list[str]:
    """Users with permissions on ``vhost`` (none if it does not exist)."""
    vhosts = {line.strip() for line in _ctl(container, host, ["list_vhosts", "--quiet", "--no-table-headers"]).split()}
    if vhost not in vhosts:
        return []
    out = _ctl(container, host, ["list_permissions", "-p", vhost, "--quiet", "--no-table-headers"])
    return [line.split("\t")[0].strip() for line in out.splitlines() if line.strip() and not line.startswith("Listing")]


def remove_account(container: Any, host: str, vhost: str, user: str) -> list[str]:
    """A project leaves the shared broker: its ``vhost`` (its queues) and its users are deleted; returns them."""
    users = _users(container, host)
    mine = ({name for name in _vhost_users(container, host, vhost) if _ours(name, users)} | {user}) & set(users)
    if vhost in {v.strip() for v in _ctl(container, host, ["list_vhosts", "--quiet", "--no-table-headers"]).split()}:
        _ctl(container, host, ["delete_vhost", vhost])
    for name in sorted(mine):
        _ctl(container, host, ["delete_user", name])
    return sorted(mine)


def wait_for_login(url: str, host: str, timeout: float, container: Any | None = None) -> None:
    """Log in at ``url`` until it works; a refused login fails at once, anything else after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with Connection(url, connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
            return
        except Exception as exc:  # not reachable yet, or refused (below)
            last = exc
            if "ACCESS_REFUSED" in str(exc):
                raise ServiceError(
                    f"{host}: the broker refused our login ({str(exc).splitlines()[0]}): its accounts do not match "
                    ".mlframework/secrets.env - another broker answering on that port, or one that keeps the "
                    "users of an older cluster of this name; `./infra_clean.sh --volumes` removes its data"
                ) from None
            if container is not None:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
            time.sleep(1)
    tail = f"; its last log lines:\n{broker_log_tail(container)}" if container is not None else ""
    raise ServiceError(f"{host}: the broker did not accept connections within {timeout:g}s: {last}{tail}")
