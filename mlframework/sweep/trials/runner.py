"""Worker side: run one training command and stream what it prints.

The seed's ``sync_exec`` + ``report``, done without a shell: the command is an
argv list, so a parameter value with spaces or quotes stays one argument.
Both output streams are read as they come, a chunk at a time, and split into
lines (ANSI control codes stripped, each carriage-return redraw of a progress
bar a line of its own) that are handed to a callback in groups; the tails of
stderr and of stdout are kept to explain a failure; the metrics the script logged through
:mod:`mlframework.metrics` are read back at the end.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mlframework import envvars, metrics
from mlframework.system import proctree
from mlframework.system.parent_death import die_with_parent, pdeathsig_launcher

log = logging.getLogger(__name__)

LineCallback = Callable[[str, str], None]  # (stream name, line)
LinesCallback = Callable[[str, list[str]], None]  # (stream name, lines that arrived together)

# CSI sequences (colours, cursor moves), OSC sequences (titles, links) and lone escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_READ_SIZE = 65536
_LONGEST_LINE = 1 << 20  # bytes without a line break that are passed on as a line anyway
# What a command leaves running when it exits gets this long between SIGTERM and SIGKILL: its slot waits meanwhile.
_LEFTOVER_GRACE = 1.0
_GATHER_SECONDS = 0.002  # shorter: the pipe (64 KiB) fills and blocks the script; 0: a wakeup per line


def strip_ansi(text: str) -> str:
    """Remove terminal control sequences from one line of output."""
    return _ANSI.sub("", text)


@dataclass
class CommandResult:
    """What one run of a training command produced."""

    argv: list[str]  # the command as run
    exit_code: int  # negative: killed by that signal
    duration_s: float
    stderr_tail: list[str]  # last lines of stderr, to explain a failure (a traceback)
    metrics: dict[str, Any] = field(default_factory=dict)  # last value of each logged metric
    history: list[dict[str, Any]] = field(default_factory=list)  # every metrics.log() record
    timed_out: bool = False  # stopped after its time limit (``timeout`` of :func:`run_command`)
    stdout_tail: list[str] = field(default_factory=list)  # last lines of stdout, shown after stderr's on a failure

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _unstartable(program: str, cwd: str | os.PathLike[str] | None, path: str | None) -> str | None:
    """Why ``program`` cannot be run (as the launcher would only say after the fact), or None."""
    if os.sep not in program:
        return None if shutil.which(program, path=path) else "No such file or directory (not on PATH)"
    where = os.path.join(cwd, program) if cwd is not None else program
    if not os.path.isfile(where):
        return "No such file or directory"
    if not os.access(where, os.X_OK):
        return "Permission denied"
    return None


def split_output(text: str, redrawing: bool = False) -> list[str]:
    """The lines of a piece of output: ANSI codes stripped, each ``\\r`` redraw of a progress bar a line.

    ``redrawing``: the first line goes on one that was already redrawn with ``\\r``.
    """
    lines = text.split("\n")
    if "\r" not in text and "\x1b" not in text and not redrawing:
        return lines  # the common case, without a Python step per line
    result = []
    for number, raw in enumerate(lines):
        redrawn = "\r" in raw or (redrawing and number == 0)
        for part in raw.rstrip("\r").split("\r"):
            line = strip_ansi(part)
            if redrawn and not line.strip():
                continue  # what a redraw leaves between two states of a progress bar
            result.append(line)
    return result


def _complete(pending: bytes) -> tuple[bytes | None, bytes, bool]:
    """``pending`` split into its complete lines (None when none yet), the rest, and whether a redraw cut it."""
    cut = pending.rfind(b"\n")
    if cut >= 0:
        return pending[:cut], pending[cut + 1 :], False
    # A progress bar writes \r and no \n for minutes: pass each redraw on as it comes.
    # A \r at the very end may be the first half of \r\n: wait for what follows.
    cut = pending.rfind(b"\r", 0, len(pending) - 1)
    if cut >= 0:
        return pending[: cut + 1], pending[cut + 1 :], True
    if len(pending) >= _LONGEST_LINE:
        return pending, b"", False
    return None, pending, False


class LineSplitter:
    """Turns output read in chunks of any size into lines, the same lines however it was cut."""

    def __init__(self) -> None:
        self._pending = b""
        self._redrawing = False  # the line being read was cut at a \r already

    def feed(self, chunk: bytes) -> list[str]:
        """The lines completed by ``chunk``."""
        complete, self._pending, cut_at_redraw = _complete(self._pending + chunk)
        if complete is None:
            return []
        lines = split_output(complete.decode("utf-8", errors="replace"), self._redrawing)
        self._redrawing = cut_at_redraw  # cut at a \n: the next line starts afresh
        return lines

    def end(self) -> list[str]:
        """The last line, when the output did not end with a line break."""
        rest, self._pending = self._pending, b""
        return split_output(rest.decode("utf-8", errors="replace"), self._redrawing) if rest else []


def _pump(
    pipe: IO[bytes],
    stream: str,
    on_lines: LinesCallback,
    tail: collections.deque[str] | None,
    exited: threading.Event,
) -> None:
    # Chunks, not readline(): a chatty script's lines are handled a chunk at a time.
    descriptor = pipe.fileno()
    splitter = LineSplitter()
    while True:
        chunk = os.read(descriptor, _READ_SIZE)
        lines = splitter.feed(chunk) if chunk else splitter.end()
        if lines:
            if tail is not None:
                tail.extend(lines)
            on_lines(stream, lines)
        if not chunk:
            break
        if len(chunk) < _READ_SIZE // 2:
            # Let a chatty script's lines gather for a moment: a wakeup per line would cost more
            # (in context switches) than everything else done per line; the output is still live.
            exited.wait(_GATHER_SECONDS)
    pipe.close()


# The records a source has not handed on yet, told whether the command has written metrics.log records so far.
MetricSource = Callable[[bool], list[dict[str, Any]]]


class MetricsTail(threading.Thread):
    """Hands on a running command's new metric records, every ``interval`` seconds.

    The records it appends to its metrics file first, then those of ``sources``
    (what it prints, the log files it writes): one call per interval with
    everything new, not one per record. This is how a search's pruner hears a
    trial's progress while it runs, whichever way the script reports it. It stops
    when the command exits; the final read of each source stays the record's history.
    """

    def __init__(
        self,
        path: Path,
        on_metrics: Callable[[list[dict[str, Any]]], None],
        exited: threading.Event,
        interval: float = 0.2,
        sources: Sequence[MetricSource] = (),
    ) -> None:
        super().__init__(name="mlframework-metrics", daemon=True)
        self._path, self._on_metrics, self._exited, self._interval = path, on_metrics, exited, interval
        self._sources = list(sources)
        self._offset = 0
        self._pending = b""
        self.logged = False  # the command wrote metrics.log records (printed default forms then step back)
        self.start()

    def _read(self) -> None:
        records = self._read_file()
        self.logged = self.logged or bool(records)
        for source in self._sources:
            try:
                records += source(self.logged)
            except Exception:  # live metrics are best effort; the trial goes on
                log.exception("could not read a trial's metrics")
        if records:
            try:
                self._on_metrics(records)
            except Exception:  # live metrics are best effort; the trial goes on
                log.exception("could not pass on %d metrics record(s)", len(records))

    def _read_file(self) -> list[dict[str, Any]]:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        complete, _, self._pending = (self._pending + data).rpartition(b"\n")
        records = []
        for line in complete.split(b"\n") if complete else []:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("values"), dict):
                records.append(record)
        return records

    def run(self) -> None:
        while not self._exited.wait(self._interval):
            self._read()


_SCRATCH_PREFIX = "mlframework-trials-"
_scratch: dict[int, str] = {}  # process id -> that process's private scratch directory
_scratch_names = itertools.count()


def _metrics_file() -> Path:
    """A new path for one command's metrics, in a private (0700) directory made once per process.

    Not a directory per command: making and removing one costs about 0.7 ms
    here, a good part of what the framework adds to a short trial.
    """
    directory = _scratch.get(os.getpid())
    if directory is None:
        remove_stale_scratch()
        directory = _scratch[os.getpid()] = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-")
        atexit.register(shutil.rmtree, directory, True)
    return Path(directory) / f"metrics-{next(_scratch_names)}.jsonl"


def remove_stale_scratch() -> None:
    """Remove the scratch directories of this user's processes that are gone.

    A worker's pool processes are stopped by a signal, so neither atexit nor
    a finalizer removes theirs: the next process does.
    """
    for stale in Path(tempfile.gettempdir()).glob(f"{_SCRATCH_PREFIX}*"):
        pid = stale.name[len(_SCRATCH_PREFIX) :].split("-")[0]
        try:
            if not pid.isdigit() or stale.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:  # alive (another user's), or already removed
            continue


def run_command(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    on_line: LineCallback | None = None,
    on_lines: LinesCallback | None = None,
    tail_lines: int = 40,
    stdout_tail_lines: int = 20,
    timeout: float | None = None,
    grace: float = 5.0,
    on_start: Callable[[int], None] | None = None,
    on_metrics: Callable[[list[dict[str, Any]]], None] | None = None,
    metric_sources: Sequence[MetricSource] = (),
    merge_streams: bool = False,
) -> CommandResult:
    """Run ``argv`` (no shell), streaming each output line to ``on_line`` (or in groups to ``on_lines``).

    ``env`` is added to the worker's environment. The command learns where to
    write metrics from ``MLFRAMEWORK_METRICS_FILE``; Python output is
    unbuffered so lines arrive while the script runs, not when it exits.
    A command that cannot be started gives exit code 127 and the reason in
    ``stderr_tail`` rather than an exception, like a shell would.

    The command runs in a session of its own; when it exits (or after
    ``timeout`` seconds, or when the calling task is cancelled) whatever it
    left running is stopped with :func:`~mlframework.system.proctree.stop_group`
    (SIGTERM, SIGKILL after ``grace``). ``duration_s`` is the command's own.
    ``on_start(pid)`` learns the command's process id; ``on_metrics(records)``
    gets its ``metrics.log`` records, then those of ``metric_sources``, while it
    runs (see :class:`MetricsTail`).

    stdout and stderr are two pipes read as they come: their lines keep their
    order within each stream, and between them only as closely as the reads
    allow. ``merge_streams`` gives the command one pipe for both (as ``2>&1``):
    the exact order it wrote them, all lines reported as ``stdout`` and the
    tail kept for a failure taken from both. Apart, each stream has its own tail
    (``stderr_tail``, ``stdout_tail``): a traceback is not pushed out of it by
    whatever the script printed on stdout meanwhile.
    """
    if on_lines is not None:
        callback: LinesCallback = on_lines
    elif on_line is not None:
        line_callback = on_line

        def callback(stream: str, lines: list[str]) -> None:
            for line in lines:
                line_callback(stream, line)
    else:
        callback = lambda stream, lines: None  # noqa: E731
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    stdout_tail: collections.deque[str] = collections.deque(maxlen=stdout_tail_lines)
    metrics_path = _metrics_file()
    try:
        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env[envvars.METRICS_FILE] = str(metrics_path)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        tag = child_env[proctree.TREE_ENV] = proctree.new_tag()
        proctree.become_subreaper()
        started = time.monotonic()
        launcher = pdeathsig_launcher()
        problem = _unstartable(argv[0], cwd, child_env.get("PATH")) if launcher else None
        try:
            if problem is not None:
                raise OSError(problem)
            process = subprocess.Popen(
                [*launcher, *argv] if launcher else list(argv),
                cwd=cwd,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge_streams else subprocess.PIPE,
                preexec_fn=None if launcher else die_with_parent,
                # Its own session: its group can be stopped whole, and a terminal's signals do not reach it.
                start_new_session=True,
            )
        except OSError as exc:
            reason = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            callback("stderr", [reason])
            return CommandResult(list(argv), 127, time.monotonic() - started, [reason])
        exited = threading.Event()  # no more gathering: read what is left at once
        readers = [
            threading.Thread(
                target=_pump, args=(process.stdout, "stdout", callback, tail if merge_streams else stdout_tail, exited)
            )
        ]
        if not merge_streams:
            readers.append(threading.Thread(target=_pump, args=(process.stderr, "stderr", callback, tail, exited)))
        for reader in readers:
            reader.daemon = True
        for reader in readers:
            reader.start()
        timed_out = False
        if on_start is not None:
            on_start(process.pid)
        tailer = (
            MetricsTail(metrics_path, on_metrics, exited, sources=metric_sources) if on_metrics is not None else None
        )
        try:
            try:
                exit_code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                log.info("%s ran past its %ss limit: stopped", argv, timeout)
                proctree.stop_group(process.pid, tag, grace)
                exit_code = process.wait()
            duration = time.monotonic() - started
            exited.set()
            # What it left behind (background children holding its pipes open, daemons): stopped now. Searching
            # /proc costs a few ms: done when the trial was long enough for that not to matter, or the pipes stay open.
            readers[0].join(timeout=0 if duration > 1.0 else 0.05)
            proctree.stop_group(
                process.pid, tag, min(grace, _LEFTOVER_GRACE), search=duration > 1.0 or readers[0].is_alive()
            )
        except BaseException:
            # The task is being cancelled (warm shutdown, time limit): take the command's processes with it.
            proctree.stop_group(process.pid, tag, grace=0.5)
            process.wait()
            raise
        finally:
            exited.set()
            for reader in readers:
                reader.join(timeout=2)
            if tailer is not None:
                tailer.join()
        final, history = metrics.read(metrics_path)
    finally:
        metrics_path.unlink(missing_ok=True)
    log.debug("%s exited with %s after %.2fs", argv, exit_code, duration)
    return CommandResult(list(argv), exit_code, duration, list(tail), final, history, timed_out, list(stdout_tail))
