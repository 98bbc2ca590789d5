"""Trial: one combination of parameters being run, as a task function sees it (run commands, print, report).

A project's task receives a :class:`Trial` (``mlframework.sweep.trials.tasks``
builds it from the task message) and raises :class:`TrialFailed` to mark it
FAILURE with a reason.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlframework import envvars
from mlframework.sweep.params.arguments import SEED_STYLE, ArgumentStyle
from mlframework.sweep.params.command import fill_params
from mlframework.sweep.trials import scalars, trial_env
from mlframework.sweep.trials.metric_files import MetricFiles
from mlframework.sweep.trials.runner import CommandResult, run_command
from mlframework.sweep.wire.events import OutputStreamer
from mlframework.sweep.wire.protocol import Event, metrics_event

ENV_HOST = envvars.HOST  # the host name trials report; set in worker containers
ENV_GPU = envvars.GPU  # the GPU a worker is pinned to, when not CUDA_VISIBLE_DEVICES
ENV_PROJECT = envvars.PROJECT  # the project directory a worker serves


class TrialFailed(Exception):
    """Raised by a task to mark its trial FAILURE with a reason (not a crash)."""

    def __init__(
        self,
        message: str,
        exit_code: int | None = None,
        stderr_tail: Sequence[str] = (),
        stdout_tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = list(stderr_tail)
        self.stdout_tail = list(stdout_tail)


def worker_host() -> str:
    """The name of the host this worker runs on, as recorded in results."""
    return os.environ.get(ENV_HOST) or socket.gethostname()


def worker_gpu() -> str | None:
    """The GPU(s) this worker may use, or None on a CPU worker."""
    gpu = os.environ.get(ENV_GPU) or os.environ.get("CUDA_VISIBLE_DEVICES")
    return gpu if gpu not in (None, "", "-1") else None


@dataclass
class Trial:
    """One combination of parameters being run, as a task function sees it."""

    sweep_id: str
    id: str  # stable within the sweep, e.g. t0007
    index: int  # position of the combination in the grid
    params: dict[str, Any]
    host: str = field(default_factory=worker_host)
    gpu: str | None = field(default_factory=worker_gpu)
    project_dir: Path = field(default_factory=lambda: Path(os.environ.get(ENV_PROJECT) or os.getcwd()))
    redelivered: bool = False  # the broker gave this trial to a worker before
    attempt: int = 1  # 2, 3, ... when the sweep retries a failed trial (--retries)
    timeout: float | None = None  # seconds a command of this trial may run (--trial-timeout)
    sweep_dir: str | None = None  # the sweep's results directory on the driver's machine
    arguments: ArgumentStyle = SEED_STYLE  # how options() renders the parameters
    output_scalars: scalars.Patterns = None  # metrics read from the output (sweep/trials/scalars.py)
    metric_names: tuple[str, ...] = ()  # the metrics the sweep asked for (--metric, --prune-metric), any spelling
    command: dict[str, Any] | None = None  # the parameters file's command, for the built-in task (file_task.py)
    worker: str = ""  # the worker node running it (its registry of stoppable trials: sweep/wire/control.py)
    stopped: str | None = None  # why the sweep stopped it early ("pruned"), when it did
    stop_latency_s: float | None = None  # seconds from the sweep's decision to stop it to the signal
    _output: OutputStreamer | None = field(default=None, repr=False)
    _publish: Callable[[Event], None] | None = field(default=None, repr=False)
    commands: list[CommandResult] = field(default_factory=list, repr=False)

    def options(self, places: Mapping[str, str] | None = None) -> list[str]:
        """The parameters rendered as command-line options (``--name=value`` unless the task says otherwise).

        Placeholders in string values (``out_dir: "{trial_dir}/out"``) are filled from
        ``places`` (default: :meth:`places`); see :mod:`mlframework.sweep.params.command`.
        """
        return self.arguments.render(fill_params(self.params, self.places() if places is None else places))

    def places(self) -> dict[str, str]:
        """What placeholders (in a command template, in parameter values) become for this trial."""
        return {
            "trial_dir": str(self.workdir),
            "trial": self.id,
            "sweep": self.sweep_id,
            "gpu": self.gpu or "",
            "project_dir": str(self.project_dir),
            "python": sys.executable,
        }

    @property
    def workdir(self) -> Path:
        """This trial's own directory (made on first use), for what its script writes (``model.pt``).

        ``SWEEP_DIR/work/<trial>`` where the worker sees the sweep's directory
        (embedded mode), else ``$TMPDIR/mlframework-work/<sweep>/<trial>``.
        """
        return trial_env.workdir(self.sweep_dir, self.sweep_id, self.id)

    def print(self, *values: Any, sep: str = " ", stream: str = "stdout") -> None:
        """Send a line of output to whoever runs the sweep (and to the trial's log)."""
        text = sep.join(str(value) for value in values)
        for line in text.splitlines() or [""]:
            if self._output is not None:
                self._output.write(line, stream)
            else:
                print(line, file=sys.stderr if stream == "stderr" else sys.stdout)

    def _print_lines(self, stream: str, lines: list[str]) -> None:
        if self._output is not None:
            self._output.write_lines(stream, lines)
        else:
            print("\n".join(lines), file=sys.stderr if stream == "stderr" else sys.stdout)

    def _report_metrics(self, history: list[dict[str, Any]]) -> None:
        if self._publish is not None:
            self._publish(metrics_event(self.id, self.index, self.attempt, self.host, history))

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
        merge_streams: bool = False,
    ) -> CommandResult:
        """Run a command (no shell), streaming its output; its metrics become the trial's.

        With ``check`` a non-zero exit raises :class:`TrialFailed` carrying the
        exit code and the tails of stderr and stdout. ``timeout`` (default: the sweep's
        ``--trial-timeout``) stops the command and fails the trial. The command
        gets ``MLFRAMEWORK_TRIAL_DIR`` (:attr:`workdir`) and, unless set, the
        slot's share of the CPUs as ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``;
        metrics it prints are read with :attr:`output_scalars` (sweep/trials/scalars.py), and
        those of :attr:`metric_names` in any spelling.
        ``merge_streams``: stderr into stdout, so the log keeps their exact order (see run_command).
        """
        child_env = {
            envvars.SWEEP_ID: self.sweep_id,
            envvars.TRIAL_ID: self.id,
            envvars.TRIAL_DIR: str(self.workdir),
            **trial_env.thread_limits(os.environ),
            **(env or {}),
        }
        reader = scalars.ScalarReader(self.output_scalars, exclude=self.params, wanted=self.metric_names)
        log_files = MetricFiles(self.workdir)
        from_files: list[dict[str, Any]] = []
        live = self._publish is not None
        reader.live = live

        def on_lines(stream: str, lines: list[str]) -> None:
            self._print_lines(stream, lines)
            if reader.active:
                reader.feed(lines)

        def printed(logged: bool) -> list[dict[str, Any]]:
            # The default forms step back for a script that logs its own metrics (as in its final record).
            taken = reader.take_settled()
            return [] if reader.default and (logged or from_files) else taken

        def written(logged: bool) -> list[dict[str, Any]]:
            new = log_files.poll()
            from_files.extend(new)
            return new

        from mlframework.sweep.wire.control import registered

        limit = timeout if timeout is not None else self.timeout
        with registered(self.worker, self.sweep_id, self.id) as registration:
            result = run_command(
                argv,
                cwd=cwd if cwd is not None else self.project_dir,
                env={**child_env, **registration.env},
                on_lines=on_lines,
                timeout=limit,
                on_start=registration.started,
                on_metrics=self._report_metrics if live else None,
                metric_sources=(written, printed) if reader.active else (written,),
                merge_streams=merge_streams,
            )
            request = registration.stop_request
            if request is not None and self.stopped is None:
                self.stopped, self.stop_latency_s = str(request.get("reason") or "stopped"), request.get("latency_s")
        reader.close(completed=result.ok)
        from_files.extend(log_files.poll(look=True))
        logged = bool(result.metrics or result.history or from_files)
        if reader.final and not (reader.default and logged):
            # Printed metrics, unless (for the default forms) the script logged its own: metrics.log, TensorBoard, CSV.
            result.metrics = {**reader.final, **result.metrics}
            result.history = reader.history + result.history
        if from_files:
            # TensorBoard and CSV logs: their last values, unless metrics.log or the output gave the same name.
            written_final = {name: value for record in from_files for name, value in record["values"].items()}
            result.metrics = {**written_final, **result.metrics}
            result.history = result.history + from_files
        self.commands.append(result)
        trial_env.remove_if_empty(self.workdir)
        if result.timed_out:
            reason = f"timed out after {limit:g}s (--trial-timeout)"
            raise TrialFailed(reason, result.exit_code, result.stderr_tail, result.stdout_tail)
        if check and not result.ok:
            raise TrialFailed(_exit_reason(result.exit_code), result.exit_code, result.stderr_tail, result.stdout_tail)
        return result


def _exit_reason(exit_code: int) -> str:
    if exit_code == 127:
        return "command could not be started (exit code 127)"
    if exit_code < 0:
        import signal

        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}"
