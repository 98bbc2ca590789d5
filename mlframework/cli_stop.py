"""How a sweep command is stopped: Ctrl-C, SIGTERM and a closed terminal's SIGHUP alike.

The first of them becomes a ``KeyboardInterrupt`` in the main thread (the
driver records the sweep as interrupted and prints what was recorded); the
ones after it are noted and otherwise ignored, so that a second Ctrl-C cannot
cut the clean-up short and leave workers or temporary directories behind.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType, TracebackType
from typing import Any

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
