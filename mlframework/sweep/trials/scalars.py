"""Metrics from what a training script prints: output patterns (Guild AI's "output scalars").

A script that only prints ``accuracy: 0.93`` or ``step 10 loss=0.25`` gets its
metrics recorded without editing it. Patterns are regular expressions, given to
:func:`~mlframework.sweep.trials.tasks.train_task` as ``output_scalars``:

* a mapping ``{name: regex}``, the regex's first group the value:
  ``{"accuracy": r"val_acc=([0-9.]+)"}``;
* a list of regexes whose *named* groups are the metrics:
  ``[r"step (?P<step>\\d+).*loss=(?P<loss>[0-9.e+-]+)"]`` (one record per matching line);
* a regex with groups ``name`` and ``value`` (what the default is);
* ``None`` (the default): :data:`DEFAULT_PATTERNS`, the common ``name: value`` and
  ``name=value`` forms, used only when the script logs nothing with
  :mod:`mlframework.metrics`; ``False``: none.

Names that are parameters of the trial (``lr=0.1`` echoed back) are not metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
#: ``name: value`` / ``name=value``, the value a whole word (``x=1.5`` but not ``v=1.5.2`` or ``t=12:30``).
DEFAULT_PATTERNS = (rf"(?<![\w.-])(?P<name>[A-Za-z_][\w./-]*)[ \t]*[:=][ \t]*(?P<value>{_NUMBER})(?![\w.:/-])",)
MAX_HISTORY = 2_000  # records kept per command; the final value of each metric is always kept
# Once the history is full only the last lines of each group are read (for the final values): a script
# printing hundreds of thousands of lines costs no more than that.
TAIL_LINES = 20

Patterns = None | bool | str | Sequence[str] | Mapping[str, str]


class ScalarReader:
    """Reads metrics out of output lines as they come."""

    def __init__(self, patterns: Patterns, exclude: Iterable[str] = ()) -> None:
        self.default = patterns is None or patterns is True
        if patterns is None or patterns is True:
            patterns = DEFAULT_PATTERNS
        self._named: list[tuple[str, re.Pattern[str]]] = []  # (metric, regex whose group 1 is its value)
        self._grouped: list[re.Pattern[str]] = []  # named groups are metrics; or name/value pairs
        if patterns is False:
            pass
        elif isinstance(patterns, Mapping):
            self._named = [(str(name), re.compile(regex)) for name, regex in patterns.items()]
        else:
            self._grouped = [re.compile(regex) for regex in ([patterns] if isinstance(patterns, str) else patterns)]
        self.exclude = set(exclude)
        self.final: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []

    @property
    def active(self) -> bool:
        return bool(self._named or self._grouped)

    def feed(self, lines: Sequence[str]) -> None:
        """Look for metrics in ``lines`` (one history record per pattern and line that matched).

        Each pattern runs once over the lines joined (in C, not a Python step
        per line: a chatty script prints hundreds of thousands).
        """
        if len(self.history) >= MAX_HISTORY:
            lines = lines[-TAIL_LINES:]
        text = "\n".join(lines)
        records: dict[tuple[int, int], dict[str, float]] = {}
        patterns = [(None, regex) for regex in self._grouped] + [(name, regex) for name, regex in self._named]
        for number, (metric, regex) in enumerate(patterns):
            line, position = 0, 0
            for match in regex.finditer(text):
                line += text.count("\n", position, match.start())
                position = match.start()
                found = records.setdefault((line, number), {})
                if metric is not None:
                    self._put(found, metric, match.group(1) if regex.groups else match.group(0))
                    continue
                groups = match.groupdict()
                if "name" in groups and "value" in groups:
                    self._put(found, groups["name"], groups["value"])
                else:
                    for name, value in groups.items():
                        self._put(found, name, value)
        for key in sorted(records):
            found = records[key]
            if found:
                self.final.update(found)
                if len(self.history) < MAX_HISTORY:
                    self.history.append(found)

    def _put(self, found: dict[str, float], name: str | None, value: str | None) -> None:
        if not name or value is None or name in self.exclude:
            return
        try:
            number = float(value)
        except ValueError:
            return
        found[name] = int(number) if number.is_integer() and re.fullmatch(r"[-+]?\d+", value.strip()) else number
