"""A private RabbitMQ node for the tests.

Each :class:`RabbitMQNode` is a broker of its own that clashes with nothing else
on the machine: its own node name, its own AMQP, Erlang-distribution and epmd
ports (all picked free, all bound to 127.0.0.1), its own data, log and config
under a temporary directory, its own Erlang cookie (``HOME`` points into that
directory) and its own generated user, password and vhost; ``guest`` never
exists on it.

    with RabbitMQNode(config={"consumer_timeout": "5000"}) as node:
        kombu.Connection(node.url)

Settings the new-style file cannot hold go to ``advanced`` (Erlang terms of
advanced.config, application -> key -> term): e.g. how often a channel checks
its deliveries against ``consumer_timeout`` (every 60 s by default)::

    RabbitMQNode(config={"consumer_timeout": "3000"},
                 advanced={"rabbit": {"channel_tick_interval": "1000"}})

Lifecycle: ``start()`` -> [``pause()`` / ``resume()``] -> [``restart()``] ->
``stop()``.  ``restart()`` keeps the port, the data and the users; ``stop()``
throws the whole directory away.  Every wait is bounded, and nodes still
running when the interpreter exits are stopped by an ``atexit`` hook.

Why the binaries in /usr/lib/rabbitmq/bin: Debian's /usr/sbin/rabbitmq-server
and /usr/sbin/rabbitmqctl are a wrapper that, run as root, does ``cd
/var/lib/rabbitmq`` and ``su rabbitmq``, i.e. it would use the system
``rabbitmq`` user's HOME (and so its cookie) and lose our environment.  The
scripts it wraps take everything from the environment we hand them.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from mlframework.system.parent_death import die_with_parent

log = logging.getLogger(__name__)

# Debian's unwrapped scripts first (see the module docstring); then whatever
# the PATH has, which on a generic-unix install are the real scripts too.
_DEBIAN_BIN = Path("/usr/lib/rabbitmq/bin")

# A node is "paused" with SIGSTOP; ctl calls against it would hang forever.
_CTL_TIMEOUT = 30.0


def rabbitmq_bin_dir() -> Path | None:
    """Directory holding runnable ``rabbitmq-server`` and ``rabbitmqctl``, or None."""
    if (_DEBIAN_BIN / "rabbitmq-server").exists():
        return _DEBIAN_BIN
    found = shutil.which("rabbitmq-server")
    return Path(found).resolve().parent if found else None


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the process that started it dies.

    Keeps a SIGKILLed pytest (a CI timeout) from leaving beam/epmd behind.  The
    wrapper script turns SIGTERM into a clean broker shutdown.  Linux counts
    the *thread* that forked as the parent: start nodes from the main thread.
    """
    die_with_parent(signal.SIGTERM)


def _tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


class RabbitMQNode:
    """A throw-away RabbitMQ broker on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        config: dict[str, str] | None = None,
        advanced: dict[str, dict[str, str]] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        # Extra rabbitmq.conf lines, key -> value (e.g. consumer_timeout).
        self.config = dict(config or {})
        # advanced.config, application -> key -> Erlang term (e.g. rabbit -> channel_tick_interval).
        self.advanced = {app: dict(values) for app, values in (advanced or {}).items()}
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._bin = rabbitmq_bin_dir()
        self._workdir: Path | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.port = self.dist_port = self.epmd_port = 0
        self.node_name = self.user = self.password = self.vhost = ""

    # -- what tests use ----------------------------------------------------

    @property
    def url(self) -> str:
        """``amqp://user:pass@127.0.0.1:PORT/vhost`` with the generated credentials."""
        q = urllib.parse.quote
        return (
            f"amqp://{q(self.user, safe='')}:{q(self.password, safe='')}@127.0.0.1:{self.port}/{q(self.vhost, safe='')}"
        )

    @property
    def workdir(self) -> Path | None:
        return self._workdir

    @property
    def log_file(self) -> Path | None:
        return self._workdir / "log" / f"{self.node_name}.log" if self._workdir else None

    def is_running(self) -> bool:
        """True while the broker process is alive (paused counts as running)."""
        return self._server is not None and self._server.poll() is None

    def start(self) -> RabbitMQNode:
        """Start the node; on a first start, make its directory, ports and user."""
        if self.is_running():
            return self
        if self._bin is None:
            raise RuntimeError("rabbitmq-server is not installed (run scripts/test.sh)")
        if self._workdir is None:
            self._prepare()
        _LIVE_NODES.add(self)
        t0 = time.monotonic()
        self._launch()
        log.info("RabbitMQ node %s up on port %d in %.1fs", self.node_name, self.port, time.monotonic() - t0)
        return self

    def stop(self) -> None:
        """Stop the node and delete its data; a later start() makes a fresh node."""
        try:
            self._halt()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            _LIVE_NODES.discard(self)

    def restart(self) -> None:
        """Stop and start again on the same port and data: queues, messages, users survive."""
        self._halt()
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections hang instead of being refused."""
        if not self.is_running():
            raise RuntimeError(f"RabbitMQ node {self.node_name} is not running")
        self._signal_group(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo pause() (SIGCONT)."""
        self._signal_group(signal.SIGCONT)
        self._paused = False

    def ctl(self, *args: str, timeout: float = _CTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE *args`` against this node; raises on failure."""
        assert self._bin is not None
        return subprocess.run(
            [str(self._bin / "rabbitmqctl"), "-n", self.node_name, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def __enter__(self) -> RabbitMQNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.is_running() else "stopped"
        return f"<RabbitMQNode {self.node_name or '?'} port={self.port} {state}>"

    # -- lifecycle steps ---------------------------------------------------

    def _prepare(self) -> None:
        """Directory, cookie, ports, credentials and config: everything before a launch."""
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._workdir = Path(tempfile.mkdtemp(prefix=f"mlf-rabbitmq-{tag}-"))
        for sub in ("mnesia", "log", "conf.d"):
            (self._workdir / sub).mkdir()
        self.node_name = f"mlf-test-{tag}@localhost"
        self.port, self.dist_port, self.epmd_port = _free_ports(3)
        self.user = f"mlf-{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(18)
        self.vhost = f"mlf-test-{secrets.token_hex(3)}"

        # Erlang refuses a cookie file that others can read.
        cookie = self._workdir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        (self._workdir / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq's
        (self._workdir / "enabled_plugins").write_text("[].\n")

        # default_* make the broker create our user and vhost on its first boot
        # *instead of* guest: no rabbitmqctl round trips, no window with guest.
        lines = {
            "listeners.tcp.default": f"127.0.0.1:{self.port}",
            "default_vhost": self.vhost,
            "default_user": self.user,
            "default_pass": self.password,
            "default_permissions.configure": ".*",
            "default_permissions.read": ".*",
            "default_permissions.write": ".*",
            # A nearly full /tmp must not block publishers in the middle of a test.
            "disk_free_limit.absolute": "1MB",
            "log.console": "false",
            "log.file.level": "info",
        }
        lines.update(self.config)
        (self._workdir / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        if self.advanced:
            apps = ",\n ".join(
                f"{{{app}, [{', '.join(f'{{{k}, {v}}}' for k, v in values.items())}]}}"
                for app, values in self.advanced.items()
            )
            (self._workdir / "advanced.config").write_text(f"[\n {apps}\n].\n")

    def _env(self) -> dict[str, str]:
        """The environment of epmd, the server and rabbitmqctl alike."""
        assert self._workdir is not None
        w = self._workdir
        # Nothing from the caller's RABBITMQ_*/ERL_* may point us at another broker.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_")) and k != "NOTIFY_SOCKET"}
        # Loopback only, and never let erl daemonize an epmd we would not own.
        erl_args = "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
        env.update(
            {
                "HOME": str(w),  # -> our .erlang.cookie, for the server and the CLI
                "LC_ALL": "C.UTF-8",  # the Elixir CLI warns on a latin1 VM
                "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODENAME": self.node_name,
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
                "RABBITMQ_LOG_BASE": str(w / "log"),
                "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
                "RABBITMQ_CONFIG_FILES": str(w / "conf.d"),  # not /etc/rabbitmq/conf.d
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),  # absent unless advanced=
                "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(w / "rabbitmq.pid"),
                # No busy-waiting schedulers: on a machine the broker shares with the workers and the
                # driver, an idle Erlang scheduler spinning for work takes CPU from the trials.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{erl_args} +sbwt none +sbwtdcpu none +sbwtdio none",
                "RABBITMQ_CTL_ERL_ARGS": erl_args,
                # 0..0: rabbitmqctl listens on an ephemeral port, not 35672-35682.
                "RABBITMQ_CTL_DIST_PORT_MIN": "0",
                "RABBITMQ_CTL_DIST_PORT_MAX": "0",
            }
        )
        return env

    def _spawn(self, argv: list[str], logname: str) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        with open(self._workdir / "log" / logname, "ab") as out:
            return subprocess.Popen(
                argv,
                env=self._env(),
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop/pause hit all of it
                preexec_fn=_die_with_parent,
            )

    def _launch(self) -> None:
        assert self._bin is not None and self._workdir is not None
        deadline = time.monotonic() + self.start_timeout
        try:
            epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
            self._epmd = self._spawn([epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"], "epmd.log")
            self._wait_until(lambda: _port_open(self.epmd_port), self._epmd, deadline, "epmd")
            self._server = self._spawn([str(self._bin / "rabbitmq-server")], "startup.log")
            # The listener opens late in the boot; await_startup then answers at
            # once (called earlier, it re-polls only every 10 s).
            self._wait_until(lambda: _port_open(self.port), self._server, deadline, "the AMQP listener")
            self.ctl(
                "await_startup",
                "--timeout",
                str(max(1, int(deadline - time.monotonic()))),
                timeout=max(1.0, deadline - time.monotonic()) + 5,
            )
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            detail = "".join(getattr(exc, a, None) or "" for a in ("stdout", "stderr"))
            self._halt()
            raise RuntimeError(
                f"RabbitMQ node {self.node_name} did not start: {exc}\n{detail}"
                f"--- {self.log_file} ---\n{_tail(self.log_file)}\n"  # type: ignore[arg-type]
                f"--- startup.log ---\n{_tail(self._workdir / 'log' / 'startup.log')}"
            ) from exc

    def _wait_until(self, ready, proc: subprocess.Popen[bytes], deadline: float, what: str) -> None:
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: process exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {self.start_timeout:.0f}s waiting for {what}")
            time.sleep(0.1)

    def _halt(self) -> None:
        """Stop the processes, keep the directory: cleanly, then by force, bounded."""
        server, self._server = self._server, None
        if server is not None:
            self._stop_server(server)
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            _kill_group(epmd, signal.SIGTERM, 5.0)
        self._paused = False

    def _stop_server(self, server: subprocess.Popen[bytes]) -> None:
        if server.poll() is None:
            _signal_pg(server.pid, signal.SIGCONT)  # a paused node cannot stop
            try:
                self.ctl("stop", timeout=self.stop_timeout)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("rabbitmqctl stop %s failed: %s", self.node_name, exc)
            try:
                server.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("RabbitMQ node %s ignored stop; terminating", self.node_name)
        # TERM (the wrapper shuts the broker down), then KILL; also reaps any
        # straggler of the group (erl_child_setup) once the broker is gone.
        _kill_group(server, signal.SIGTERM, 10.0)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._server is not None:
            _signal_pg(self._server.pid, sig)


def _signal_pg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals, grace: float) -> None:
    """Signal the process group led by ``proc``, SIGKILL it after ``grace``, reap ``proc``."""
    if proc.poll() is None:
        _signal_pg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_pg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        log.error("process %d survived SIGKILL", proc.pid)


_LIVE_NODES: set[RabbitMQNode] = set()


@atexit.register
def _stop_leftover_nodes() -> None:
    for node in list(_LIVE_NODES):
        try:
            node.stop()
        except Exception:
            log.exception("could not stop %r", node)
