"""What several commands share: the error line, the broker choice, resume hints, one duration type, option blocks.

Each shared click option block is written once here, as a decorator; the command modules
use them and never import :mod:`mlframework.cli.main` (which only assembles the group).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from shlex import join
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlframework import envvars

if TYPE_CHECKING:
    from mlframework.cluster.ssh.remote import SSHOptions
    from mlframework.sweep.wire.app import BrokerSettings

EXIT_USAGE = 2
CAUSE_LINES = 15  # of an error's cause (a worker's log, a traceback), shown under its first line

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> None:
    """The error's first line, then the last lines of its cause (if it carries one) indented; exit 2."""
    first, *cause = message.splitlines() or [""]
    click.echo(f"mlframework: error: {first}", err=True)
    for line in cause[-CAUSE_LINES:]:
        click.echo(f"  | {line}", err=True)
    sys.exit(EXIT_USAGE)


def repo_root() -> Path:
    """The checkout that holds ``config.sh``, ``infra/`` and ``projects/``.

    The current directory when it is one (the scripts run from there), else
    the checkout this package was installed from.
    """
    cwd = Path.cwd()
    if (cwd / "infra").is_dir() and (cwd / "mlframework").is_dir():
        return cwd
    return Path(__file__).resolve().parents[2]


def broker_from_options(broker_url: str | None) -> BrokerSettings | None:
    """--broker / MLFRAMEWORK_BROKER_URL, else the cluster infrainit recorded, else None."""
    from mlframework.cluster.config_file import load_config
    from mlframework.cluster.recorded import cluster_broker
    from mlframework.cluster.spec import CONFIG_FILE
    from mlframework.sweep.wire.app import BrokerSettings

    if broker_url:
        return BrokerSettings(url=broker_url)
    root = repo_root()
    config = root / CONFIG_FILE
    if config.exists() and any(load_config(config).get(key) for key in ("MASTER", "BROKER")):
        return cluster_broker(root)
    return None


def require_broker(broker_url: str | None) -> BrokerSettings:
    """:func:`broker_from_options`, or one line saying how to get a broker."""
    from mlframework.exceptions import ConfigError

    broker = broker_from_options(broker_url)
    if broker is None:
        raise ConfigError("no broker: start a cluster (scripts/infrainit.sh), pass --broker URL, or use --local")
    return broker


def resolve_sweep(results_root: Path, text: str, *, missing_ok: bool = False) -> str:
    """SWEEP_ID as given on the command line (an id, or a unique prefix of one) -> the sweep's id.

    ``missing_ok``: a sweep that is not in RESULTS (a detached one, on the master) keeps the id given.
    """
    from mlframework.sweep.records.catalog import UnknownSweep, resolve_sweep_id

    try:
        return resolve_sweep_id(results_root, text)
    except UnknownSweep as exc:
        if missing_ok and not exc.candidates and text and "/" not in text:
            return text
        raise


# -- resume hints ----------------------------------------------------------------


def resume_command(
    sweep_id: str, results_root: Path, local: bool = False, workers: int | None = None, gpus: str | None = None
) -> str:
    """The command that resumes sweep ``sweep_id`` of ``results_root``, from any directory."""
    options = ["--results", str(Path(results_root).resolve())]
    if local:
        options.append("--local")
        options += ["--workers", str(workers)] if workers is not None else []
        options += ["--gpus", gpus] if gpus is not None else []
    return join(["mlframework", "sweep", "--resume", sweep_id, *options])


def recorded_resume_command(results_root: Path, sweep_id: str) -> str:
    """The command that resumes a recorded sweep the way it was started (``--local`` for an embedded one)."""
    from mlframework.exceptions import MLFrameworkError
    from mlframework.sweep.driver.cancel import is_embedded
    from mlframework.sweep.records.catalog import read_meta

    try:
        meta: dict[str, Any] | None = read_meta(Path(results_root) / sweep_id)
    except MLFrameworkError:  # not here (a detached sweep): resumed as a cluster sweep
        meta = None
    return resume_command(sweep_id, results_root, local=is_embedded(meta))


# -- one duration type -------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``1.5m``, ``2h`` or ``1d``; ValueError for anything else (or not > 0)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r}: not a duration")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{text!r}: not a positive duration")
    return seconds


class Duration(click.ParamType[float, Any]):
    """A click type for a duration (``90``, ``90s``, ``1.5m``, ``2h``, ``1d``): its seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r}: give a duration such as 90, 90s, 1.5m, 30m, 2h or 1d", param, ctx)


DURATION = Duration()


def format_duration(seconds: float) -> str:
    """A duration as :func:`parse_duration` reads it back (``90``, ``1.5``)."""
    return repr(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


# -- option blocks ---------------------------------------------------------------

RESULTS_HELP_HOLDS = "Directory that holds the sweeps (<sweep-id>/ each)."
RESULTS_HELP_RECEIVES = "Directory that receives <sweep-id>/."


def results_option(help: str = RESULTS_HELP_HOLDS) -> Callable[[F], F]:
    """``--results DIR`` (default ``results``) as ``results_root``."""
    return click.option(
        "--results",
        "results_root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("results"),
        show_default=True,
        help=help,
    )


def broker_option(help: str = "Broker URL of a running cluster.") -> Callable[[F], F]:
    """``--broker URL`` (or MLFRAMEWORK_BROKER_URL) as ``broker_url``."""
    return click.option("--broker", "broker_url", envvar=envvars.BROKER_URL, help=help)


def known_hosts_option(function: F) -> F:
    """``--known-hosts FILE`` (or MLFRAMEWORK_KNOWN_HOSTS)."""
    return click.option(
        "--known-hosts",
        envvar=envvars.KNOWN_HOSTS,
        type=click.Path(dir_okay=False),
        help="known_hosts file that host keys are checked against  [default: ~/.ssh/known_hosts]",
    )(function)


def ssh_options(function: F) -> F:
    """``--known-hosts`` and ``--connect-timeout``: how the hosts are reached over SSH."""
    timeout = click.option(
        "--connect-timeout",
        type=click.FloatRange(min=1),
        default=10,
        show_default=True,
        help="SSH connect timeout (s).",
    )
    return known_hosts_option(timeout(function))


def make_ssh_options(key: str | None, known_hosts: str | None, accept_new: bool, timeout: float) -> SSHOptions:
    """SSHOptions from the command line's key, known_hosts file, host-key policy and timeout."""
    from mlframework.cluster.ssh.remote import SSHOptions

    return SSHOptions(
        key_filename=os.path.expanduser(key) if key else None,
        known_hosts=os.path.abspath(os.path.expanduser(known_hosts)) if known_hosts else None,
        accept_new_host_keys=accept_new,
        connect_timeout=timeout,
    )


def cluster_ssh_options(spec: Any, known_hosts: str | None = None, connect_timeout: float = 10.0) -> SSHOptions:
    """How to reach the recorded cluster's hosts: its key, and known_hosts (MLFRAMEWORK_KNOWN_HOSTS)."""
    return make_ssh_options(
        spec.ssh_key,
        known_hosts or os.environ.get(envvars.KNOWN_HOSTS),
        spec.accept_new_host_keys,
        connect_timeout,
    )


def check_local_options(local: bool, broker_url: str | None, workers: int | None, gpus: str | None) -> None:
    """One line when ``--local`` and ``--broker`` are both given, or ``--workers``/``--gpus`` without ``--local``."""
    from mlframework.exceptions import ConfigError

    if local and broker_url:
        raise ConfigError("--local and --broker exclude each other")
    given = [name for name, value in (("--workers", workers), ("--gpus", gpus)) if value is not None]
    if given and not local:
        raise ConfigError(f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with --local")
