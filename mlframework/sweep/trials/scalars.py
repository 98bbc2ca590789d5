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
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from mlframework.sweep.trials.metric_names import (
    METRIC_WORDS,
    STEP_KEYS,
    is_step,
    looks_like_metric,
    metric_key,
    name_pattern,
)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# The value is a whole number: not ``1.2`` of ``1.2.3``, ``12`` of ``12:30`` or ``12,288``, ``2`` of ``2ms``.
_END = r"(?![\w.]|[:/-]\d|,\d)"
# Words that qualify the metric name after them: ``train loss``, ``Average loss``, ``best val acc``.
_QUALIFIERS = (
    r"train|training|val|valid|validation|eval|evaluation|test|dev|avg|average|mean|running|smoothed|total|"
    r"batch|best|final|top-?\d+"
)
_QUALIFIED = re.compile(rf"(?:(?<![\w.-])(?:{_QUALIFIERS})[ \t]+){{1,2}}$", re.IGNORECASE)
# A name whose value follows after a space (no ``:``/``=``) must end with one of these words.
_SPACED_ENDS = sorted({*METRIC_WORDS.split("|"), *STEP_KEYS}, key=len, reverse=True)
# One pass over the output, in C. The name is matched whole (a lookahead and a back-reference: an atomic
# group, which Python 3.10 lacks), and the space-separated form is tried only before a digit: the cost per
# word of plain output stays what a simple ``name: value`` pattern costs.
_DEFAULT = (
    r"(?<![\w.-])['\"]?(?=(?P<n>[a-z_][\w./-]*))(?P=n)"
    r"(?:['\"]?[ \t]*(?P<sep>[:=])[ \t]*['\"]?|(?=[ \t]+[-+.\d])(?:"
    + "|".join(f"(?<={word})" for word in _SPACED_ENDS)
    + rf")[ \t]+)(?P<value>{_NUMBER})(?P<of>[ \t]*/[ \t]*\d+)?{_END}"
)
_DEFAULT_LOWER = re.compile(_DEFAULT)  # on output lower-cased (ASCII), faster than IGNORECASE
_DEFAULT_ANY_CASE = re.compile(_DEFAULT, re.IGNORECASE)
MAX_HISTORY = 2_000  # records kept per command; the final value of each metric is always kept
# Once the history is full only the last lines of each group are read (for the final values): a script
# printing hundreds of thousands of lines costs no more than that.
TAIL_LINES = 20
# A progress bar not at its end yet: ``3/12 [===>`` (Keras), ``3/12 [00:01<00:03`` (tqdm).
_NAME_CHAR = re.compile(r"[\w.-]")  # what may not precede a name asked for
_PROGRESS = re.compile(r"(?<![\w.])(\d+)/(\d+)[ \t]*\[")

Patterns = None | bool | str | Sequence[str] | Mapping[str, str]


def wanted_pattern(names: Sequence[str]) -> re.Pattern[str]:
    """``names`` in any spelling (``val loss``, ``val_loss``, ``Val-Loss``, ``eval_loss``) followed by a value.

    Groups ``wanted`` and ``value``. It starts with the names themselves (no look-behind)
    so that the search skips quickly to them; the caller checks what precedes a match.
    """
    alternatives = "|".join(name_pattern(name) for name in names) or "(?!)"
    return re.compile(
        rf"(?P<wanted>{alternatives})['\"]?(?:[ \t]*[:=][ \t]*|[ \t]+)(?P<value>{_NUMBER}){_END}", re.IGNORECASE
    )


def _number(text: str) -> float | int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and re.fullmatch(r"[-+]?\d+", text.strip()) else number


_DIAGNOSTIC = re.compile(
    r"^[ \t]*(?:Traceback \(most recent call last\)|File \"[^\"\n]*\", line \d+|\S+\.pyx?:\d+: \w*(?:Warning|Error)\b)",
    re.M,
)


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
        self._builtin = False  # the built-in forms (_DEFAULT)
        self._wanted_regex: re.Pattern[str] | None = None  # names asked for that the built-in forms may miss
        if patterns is False:
            pass
        elif self.default:
            self._builtin = True
            missed = [name for name in self._wanted.values() if not looks_like_metric(name)]
            self._wanted_regex = wanted_pattern(missed) if missed else None
        elif patterns is not True and patterns is not None:
            if isinstance(patterns, Mapping):
                self._named = [(str(name), re.compile(regex)) for name, regex in patterns.items()]
            else:
                self._grouped = [re.compile(regex) for regex in ([patterns] if isinstance(patterns, str) else patterns)]
            self._wanted_regex = wanted_pattern(list(self._wanted.values())) if self._wanted else None
        self._excluded = {metric_key(name) for name in exclude}
        self.final: dict[str, float | int] = {}
        self._closed: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the latest record: later lines at its step still go into it
        self._open_progress = False  # the latest record is a progress bar not at its end: the next state replaces it
        self._step: float | int | None = None  # the step the last step-bearing line named
        self._stepped = False  # a step-bearing line was seen: configuration echoes are over
        self._held: dict[str, float | int] = {}  # values printed before the first step that look like configuration
        # Handing records on while the command runs (take_settled), from another thread than feed's.
        self._lock = threading.Lock()
        self.live = False  # someone takes the records as they come: keep those past MAX_HISTORY until taken
        self._handed = 0  # the closed records already handed on
        self._handed_open: dict[str, Any] | None = None  # the latest record, handed on once it had settled
        self._unkept: list[dict[str, Any]] = []  # records past MAX_HISTORY, kept only until handed on

    @property
    def active(self) -> bool:
        return bool(self._named or self._grouped or self._builtin or self._wanted_regex)

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

    def take_settled(self, quiet: float = 0.1) -> list[dict[str, Any]]:
        """The records not handed on yet, each once: every closed one, and the latest once ``quiet`` s passed.

        The latest record still takes the lines printed at its step (and a progress
        bar's next state), so it goes only when nothing has changed it for ``quiet``
        seconds (an epoch's last line is followed by the next epoch's work) and is
        not an unfinished progress bar. Later changes to it reach the record's
        history, not the live stream. Copies: the caller may hold them while the
        reader goes on.
        """
        with self._lock:
            fresh = [r for r in [*self._closed[self._handed :], *self._unkept] if r is not self._handed_open]
            self._handed, self._unkept = len(self._closed), []
            latest = self._open
            settled = latest is not None and time.time() - latest["time"] >= quiet and not self._open_progress
            if latest is not None and settled and latest is not self._handed_open:
                fresh.append(latest)
                self._handed_open = latest
            return [{**record, "values": dict(record["values"])} for record in fresh]

    def feed(self, lines: Sequence[str]) -> None:
        """Look for metrics in ``lines`` (at most one record per line; lines at one step share one).

        Each pattern runs once over the lines joined (in C, not a Python step
        per line: a chatty script prints hundreds of thousands).
        """
        with self._lock:
            self._feed(lines)

    def _feed(self, lines: Sequence[str]) -> None:
        if len(self._closed) >= MAX_HISTORY:
            lines = lines[-TAIL_LINES:]
        text = "\n".join(lines)
        found: dict[int, _Line] = {}

        def line_of(regex: re.Pattern[str], subject: str) -> Iterator[tuple[_Line, re.Match[str]]]:
            line, position = 0, 0
            for match in regex.finditer(subject):
                line += text.count("\n", position, match.start())
                position = match.start()
                into = found.get(line)
                if into is None:
                    into = found[line] = _Line()
                yield into, match

        if self._builtin:
            ascii_text = text.isascii()  # then lower-casing keeps every position
            subject, regex = (text.lower(), _DEFAULT_LOWER) if ascii_text else (text, _DEFAULT_ANY_CASE)
            # Python's warnings and tracebacks name files and lines (`cli.py:9: UserWarning: ... version_base=1.3`):
            # no metric there.
            diagnostics = {text.count("\n", 0, m.start()) for m in _DIAGNOSTIC.finditer(text)}
            for into, match in line_of(regex, subject):
                if not diagnostics or text.count("\n", 0, match.start()) not in diagnostics:
                    self._put_default(into, text, match)
        if self._wanted_regex is not None:
            for into, match in line_of(self._wanted_regex, text):
                if match.start() == 0 or not _NAME_CHAR.match(text, match.start() - 1):
                    self._put(into, match["wanted"], match["value"])
        for metric, regex in self._named:
            for into, match in line_of(regex, text):
                self._put(into, metric, match.group(1) if regex.groups else match.group(0))
        for regex in self._grouped:
            for into, match in line_of(regex, text):
                groups = match.groupdict()
                if "name" in groups and "value" in groups:
                    self._put(into, groups["name"], groups["value"])
                else:
                    for name, value in groups.items():
                        self._put(into, name, value)
        for number in sorted(found):
            self._add(found[number], lines[number] if number < len(lines) else "")

    def _put_default(self, into: _Line, text: str, match: re.Match[str]) -> None:
        """A match of the built-in forms: the name as printed, with the qualifiers before it (``val loss``)."""
        start, end = match.span("n")
        name = text[start:end]
        if is_step(name):
            self._put(into, name, match["value"])
            return
        if match["of"] or (match["sep"] is None and not looks_like_metric(name)):
            return  # ``93/100`` is no value; ``gloss 5`` no metric
        line_start = text.rfind("\n", 0, start) + 1
        before = text[line_start:start].rstrip("'\"")
        qualified = _QUALIFIED.search(before) if before.endswith((" ", "\t")) else None
        if qualified is not None:
            name = before[qualified.start() :] + name
        self._put(into, name, match["value"])

    def _put(self, into: _Line, name: str | None, value: str | None) -> None:
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
            if len(self._closed) < MAX_HISTORY:
                self._closed.append(latest)
            elif self.live and latest is not self._handed_open:
                self._unkept.append(latest)  # past the history's bound: still handed on (a pruner's later rungs)
            self._open = None
        if len(self._closed) >= MAX_HISTORY and not self.live:
            return
        self._open = {"time": time.time(), "step": step if step is not None else len(self._closed), "values": values}
        self._open_progress = unfinished
