"""Metrics from what a training script prints: output patterns (Guild AI's "output scalars").

A script that only prints ``accuracy: 0.93`` or ``step 10: train loss 0.25, val loss 0.31``
gets its metrics recorded without editing it, as records of the same shape as
:mod:`mlframework.metrics` writes (``{"time", "step", "values"}``). Patterns are
regular expressions, given to :func:`~mlframework.sweep.trials.tasks.train_task`
as ``output_scalars``:

* a mapping ``{name: regex}``, the regex's first group the value:
  ``{"accuracy": r"val_acc=([0-9.]+)"}``;
* a list of regexes whose *named* groups are the metrics:
  ``[r"step (?P<step>\\d+).*loss=(?P<loss>[0-9.e+-]+)"]``;
* a regex with groups ``name`` and ``value``;
* ``None`` (the default): the built-in forms, used only when the script logs
  nothing with :mod:`mlframework.metrics`: ``name: value``, ``name=value``,
  ``'name': value`` (dict lines such as Hugging Face's Trainer prints), and a
  metric-like name followed by its value (``train loss 2.10``, ``val_acc 0.93``,
  Keras's ``- loss: 0.41 - val_loss: 0.31``); ``False``: none.

What every form shares:

* The names the sweep asked for (``--metric``, ``--prune-metric``) are also found
  in any spelling (``val loss``, ``val_loss``, ``Val-Loss``, ``eval_loss``; see
  :mod:`~mlframework.sweep.trials.metric_names`) and recorded under the name as given.
* A key ``step``/``epoch``/``iter``/``iteration`` (``step 50:``, ``Epoch 3/10``,
  ``'epoch': 1.0``, a named group ``step``) is the record's step, never a metric.
  It holds for the lines after it until the next one; lines at the same step
  are one record (the last value of each metric counts). Without any step the
  step is the count of records.
* A progress bar's redraws (``3/12 [===>...]``, one line each once the ``\\r`` are
  split) are one record: the last state counts.
* With the default forms, a name printed before the first step-bearing line
  that has no metric-like word (``gradient_accumulation_steps = 40``,
  ``tokens per iteration will be: 12,288``) is a configuration echo, not a
  metric; when the script prints no step at all (and exits 0) those values are kept.
* Names that are parameters of the trial (``lr=0.1`` echoed back) are not metrics.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlframework.sweep.trials.metric_names import (
    METRIC_WORDS,
    STEP_KEYS,
    looks_like_metric,
    metric_key,
    name_pattern,
)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# The value is a whole number: not ``1.2`` of ``1.2.3``, ``12`` of ``12:30`` or ``12,288``, ``2`` of ``2ms``.
_END = r"(?![\w.]|[:/-]\d|,\d)"
_QUALIFIER = (
    r"(?:train|training|val|valid|validation|eval|evaluation|test|dev|avg|average|mean|running|smoothed|total|"
    r"batch|best|final|top-?\d+)"
)
_METRIC_TOKEN = rf"(?:[A-Za-z0-9]+[_-])*(?:{METRIC_WORDS})(?:@?\d+)?(?:[_-][A-Za-z0-9]+)*"
_STEP_WORD = "|".join(sorted(STEP_KEYS, key=len, reverse=True))
MAX_HISTORY = 2_000  # records kept per command; the final value of each metric is always kept
# Once the history is full only the last lines of each group are read (for the final values): a script
# printing hundreds of thousands of lines costs no more than that.
TAIL_LINES = 20
# A progress bar not at its end yet: ``3/12 [===>`` (Keras), ``3/12 [00:01<00:03`` (tqdm).
_PROGRESS = re.compile(r"(?<![\w.])(\d+)/(\d+)[ \t]*\[")

Patterns = None | bool | str | Sequence[str] | Mapping[str, str]


def builtin_pattern(wanted: Sequence[str] = (), defaults: bool = True) -> re.Pattern[str]:
    """The built-in forms as one expression (one pass over the output), for the names in ``wanted`` too.

    Its groups: ``stepword`` (a step key), ``wanted`` (one of ``wanted``, any spelling),
    ``spaced`` (a metric-like name, the value after a space or ``:``/``=``), ``name``
    (any name, the value after ``:`` or ``=``) and ``value``. Without ``defaults``
    only the step keys and ``wanted`` are read.
    """
    wanted_alternatives = "|".join(name_pattern(name) for name in wanted) or "(?!)"
    spaced = rf"(?:{_QUALIFIER}[ \t]+){{0,2}}{_METRIC_TOKEN}" if defaults else "(?!)"
    name = r"[A-Za-z_][\w./-]*" if defaults else "(?!)"
    return re.compile(
        rf"(?<![\w.-])['\"]?"
        rf"(?:(?P<stepword>{_STEP_WORD})|(?P<wanted>{wanted_alternatives})|(?P<spaced>{spaced})|(?P<name>{name}))"
        rf"['\"]?(?:[ \t]*[:=][ \t]*|(?(name)(?!)|[ \t]+))"
        rf"(?P<value>{_NUMBER})(?(stepword)(?:[ \t]*/[ \t]*\d+)?){_END}",
        re.IGNORECASE,
    )


def _number(text: str) -> float | int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and re.fullmatch(r"[-+]?\d+", text.strip()) else number


class _Line:
    """What one line held: its step (if it names one) and its values."""

    __slots__ = ("step", "values")

    def __init__(self) -> None:
        self.step: float | int | None = None
        self.values: dict[str, float | int] = {}


class ScalarReader:
    """Reads metrics out of output lines as they come; :attr:`history` holds ``metrics.log``-shaped records."""

    def __init__(self, patterns: Patterns, exclude: Iterable[str] = (), wanted: Sequence[str] = ()) -> None:
        self.default = patterns is None or patterns is True
        self._wanted = {metric_key(name): name for name in wanted if metric_key(name)}
        self._named: list[tuple[str, re.Pattern[str]]] = []  # (metric, regex whose group 1 is its value)
        self._grouped: list[re.Pattern[str]] = []  # named groups are metrics; or name/value pairs
        self._builtin: re.Pattern[str] | None = None
        if patterns is False:
            pass
        elif self.default:
            self._builtin = builtin_pattern(list(self._wanted.values()))
        elif patterns is not True and patterns is not None:
            if isinstance(patterns, Mapping):
                self._named = [(str(name), re.compile(regex)) for name, regex in patterns.items()]
            else:
                self._grouped = [re.compile(regex) for regex in ([patterns] if isinstance(patterns, str) else patterns)]
            if self._wanted:
                self._builtin = builtin_pattern(list(self._wanted.values()), defaults=False)
        self._excluded = {metric_key(name) for name in exclude}
        self.final: dict[str, float | int] = {}
        self._closed: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the latest record: later lines at its step still go into it
        self._open_progress = False  # the latest record is a progress bar not at its end: the next state replaces it
        self._step: float | int | None = None  # the step the last step-bearing line named
        self._stepped = False  # a step-bearing line was seen: configuration echoes are over
        self._held: dict[str, float | int] = {}  # values printed before the first step that look like configuration

    @property
    def active(self) -> bool:
        return bool(self._named or self._grouped or self._builtin)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every record so far, in order (``{"time", "step", "values"}``, as ``metrics.log`` writes them)."""
        return self._closed + ([self._open] if self._open is not None else [])

    def close(self, completed: bool = True) -> None:
        """The output is over: what was held as configuration is kept when the script never printed a step.

        Not when it did not complete (``completed``: it exited 0): it never got past its start-up lines.
        """
        if completed and not self._stepped and self._held:
            self.final.update({name: value for name, value in self._held.items() if name not in self.final})
        self._held = {}

    def feed(self, lines: Sequence[str]) -> None:
        """Look for metrics in ``lines`` (at most one record per line; lines at one step share one).

        Each pattern runs once over the lines joined (in C, not a Python step
        per line: a chatty script prints hundreds of thousands).
        """
        if len(self._closed) >= MAX_HISTORY:
            lines = lines[-TAIL_LINES:]
        text = "\n".join(lines)
        found: dict[int, _Line] = {}
        for metric, regex in [(None, self._builtin)] + list(self._named) + [(None, r) for r in self._grouped]:
            if regex is None:
                continue
            line, position = 0, 0
            for match in regex.finditer(text):
                line += text.count("\n", position, match.start())
                position = match.start()
                into = found.get(line)
                if into is None:
                    into = found[line] = _Line()
                if regex is self._builtin:
                    value = match["value"]
                    if match["stepword"]:
                        self._put(into, "step", value)
                    elif match["wanted"]:
                        self._put(into, match["wanted"], value, wanted=True)
                    else:
                        self._put(into, match["spaced"] or match["name"], value)
                elif metric is not None:
                    self._put(into, metric, match.group(1) if regex.groups else match.group(0))
                else:
                    groups = match.groupdict()
                    if "name" in groups and "value" in groups:
                        self._put(into, groups["name"], groups["value"])
                    else:
                        for name, value in groups.items():
                            self._put(into, name, value)
        for number in sorted(found):
            self._add(found[number], lines[number] if number < len(lines) else "")

    def _put(self, into: _Line, name: str | None, value: str | None, wanted: bool = False) -> None:
        if not name or value is None:
            return
        number = _number(value)
        if number is None:
            return
        key = metric_key(name)
        if key in STEP_KEYS:
            into.step = number
            return
        if key in self._wanted:
            name = self._wanted[key]
        elif key in self._excluded:
            return
        else:
            name = " ".join(name.split())
        into.values[name] = number

    def _add(self, line: _Line, text: str) -> None:
        """One line's step and values: a new record, or more of the latest one."""
        if line.step is not None:
            self._step = line.step
            if not self._stepped:
                self._stepped, self._held = True, {}  # what came before the first step was configuration
        values = line.values
        if self.default and not self._stepped:
            for name in [n for n in values if not looks_like_metric(n) and metric_key(n) not in self._wanted]:
                self._held[name] = values.pop(name)
        if not values:
            return
        self.final.update(values)
        progress = _PROGRESS.search(text)
        unfinished = progress is not None and int(progress[1]) < int(progress[2])
        step = self._step
        latest = self._open
        if latest is not None and (latest["step"] == step if step is not None else self._open_progress):
            latest["values"].update(values)  # the same step, or the next state of a progress bar
            latest["time"] = time.time()
            self._open_progress = unfinished
            return
        if latest is not None:
            self._closed.append(latest)
            self._open = None
        if len(self._closed) >= MAX_HISTORY:
            return
        self._open = {"time": time.time(), "step": step if step is not None else len(self._closed), "values": values}
        self._open_progress = unfinished
