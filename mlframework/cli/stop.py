"""How a sweep command is stopped: Ctrl-C, SIGTERM and a closed terminal's SIGHUP alike.

The first of them becomes a ``KeyboardInterrupt`` in the main thread (the
driver records the sweep as interrupted and prints what was recorded); the
ones after it are noted and otherwise ignored, so that a second Ctrl-C cannot
cut the clean-up short and leave workers or temporary directories behind.

After Ctrl-C of a sweep on a cluster, :func:`offer_cancel` asks once whether
to cancel its trials there (``mlframework cancel``'s path) or leave them
running for ``--resume``; without a terminal it leaves them.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import click

_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class StopSignals:
    """A context manager: while it is active, stop signals are handled as above."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal, if any
        self._previous: dict[int, Any] = {}

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a command stopped by it."""
        return 128 + (self.received or signal.SIGINT)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = number
            raise KeyboardInterrupt
        if number == signal.SIGINT:
            try:
                sys.stderr.write("mlframework: stopping the sweep's processes, a moment...\n")
            except OSError:  # the terminal is gone
                pass

    def __enter__(self) -> StopSignals:
        for number in _SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for number, previous in self._previous.items():
            # Once stopped, the command is on its way out with 128 + N: a later Ctrl-C must not cut that short.
            signal.signal(number, signal.SIG_IGN if self.received is not None else previous)


def offer_cancel(stop: StopSignals, results_root: Path, sweep_id: str | None, broker: Any) -> None:
    """After Ctrl-C of a cluster sweep, ask once whether to cancel its unfinished trials there.

    Asked only when the stop was Ctrl-C (SIGINT) and stdin is a terminal; SIGTERM,
    SIGHUP, a pipe or no answer (Ctrl-C or Ctrl-D at the prompt) leave the trials
    running, to be collected by ``mlframework sweep --resume SWEEP_ID``. A yes
    cancels the sweep as ``mlframework cancel SWEEP_ID`` does
    (:func:`mlframework.sweep.driver.cancel.cancel_sweep`): queued trials are dropped,
    running ones stopped on their hosts; the records stay and it can be resumed.
    """
    if stop.received != signal.SIGINT or sweep_id is None or broker is None or not sys.stdin.isatty():
        return
    from mlframework.exceptions import MLFrameworkError
    from mlframework.sweep.driver.cancel import cancel_sweep
    from mlframework.sweep.records.catalog import load_sweep

    try:
        sweep = load_sweep(results_root / sweep_id)
    except MLFrameworkError:  # nothing readable to cancel: the interrupt alone goes on
        return
    left = sweep.total - len(sweep.records)
    if left <= 0:
        return
    question = f"cancel its {left} unfinished trial(s) on the cluster? (no: they keep running for --resume)"
    # At the prompt, Ctrl-C means "no" (the handler above would only note it), so it gets Python's own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        answer = click.confirm(question, default=False, err=True)
    except (click.Abort, OSError):  # Ctrl-C, Ctrl-D or a terminal that went away
        answer = False
        click.echo("", err=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    from mlframework.cli.common import resume_command

    resume = resume_command(sweep_id, results_root)
    if not answer:
        click.echo(f"mlframework: sweep {sweep_id} left running on the cluster; collect it: {resume}", err=True)
        return
    click.echo(f"mlframework: cancelling sweep {sweep_id} on the cluster, a few seconds...", err=True)
    try:
        done = cancel_sweep(results_root, sweep_id, broker)
    except MLFrameworkError as exc:
        click.echo(f"mlframework: error: cannot cancel sweep {sweep_id}: {exc}", err=True)
        return
    stopped = sum(len(trials) for trials in done.stopped.values())
    click.echo(
        f"cancelled sweep {sweep_id}: {stopped} running trial(s) stopped, its queued ones dropped; "
        f"records kept ({resume} carries on)"
    )
