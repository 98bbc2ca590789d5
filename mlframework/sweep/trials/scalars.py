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
* Past :data:`MAX_HISTORY` records the history stops growing; with the built-in forms a metric's
  final value is still its last printed one, and each group of lines read hands on the latest
  value of each metric (with its step) to a live taker such as the pruner.
"""

from __future__ import annotations

import itertools
import operator
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
# Once the history is full, user-given patterns read only the last lines of each group (for the final values).
# The built-in forms read every line by its shape (see _feed_shapes).
TAIL_LINES = 20
# A line's shape: its bytes with every ASCII digit made 0. Lines of one shape hold the same names at the same
# places (every pattern tells a digit from other characters, never one digit from another), so once the history
# is full the last line of a group holding each metric is all that needs reading for the final values.
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_SHAPES = 1_024  # shapes remembered per reader (and what each holds)
_RECENT = 8  # shapes of the last groups, counted first: most groups hold no other
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
    return int(number) if number.is_integer() and _INTEGER.fullmatch(text.strip()) else number


_INTEGER = re.compile(r"[-+]?\d+")


_DIAGNOSTIC = re.compile(
    r"^[ \t]*(?:Traceback \(most recent call last\)|File \"[^\"\n]*\", line \d+|\S+\.pyx?:\d+: \w*(?:Warning|Error)\b)",
    re.M,
)


class _Line:
    """What one line held: its step (if it names one) and its values.

    ``puts``: each name read, where it is printed (with its qualifiers) and where its value is.
    """

    __slots__ = ("puts", "step", "values")

    def __init__(self) -> None:
        self.step: float | int | None = None
        self.values: dict[str, float | int] = {}
        self.puts: list[tuple[str, int, int, int, int]] = []


class _Shape:
    """What every line of one shape holds: (the step, or the metric's name as recorded; where its value is)."""

    __slots__ = ("digits", "exact", "names", "reads", "stepped")

    def __init__(self, reads: tuple[tuple[str | None, int, int, bool], ...], digits: tuple[int, ...] = ()) -> None:
        # (name, None: the step; the value's start and end; whether it is written as a whole number, as every
        # line of the shape writes it)
        self.reads = reads
        self.names = frozenset(name for name, _, _, _ in reads)  # None: the step
        self.stepped = None in self.names
        # Where the names read have digits (``top1 acc``, ``rouge2``): lines of this shape with other digits
        # there hold other names (``top5 acc``); each set of them is a shape of its own (ScalarReader._exact).
        self.digits = digits
        self.exact = not digits

    def read(self, line: str) -> _Line:
        """``line`` (of this shape) read: its step and values, as :func:`_number` reads them."""
        into = _Line()
        for name, start, end, whole in self.reads:
            try:
                value = float(line[start:end])
            except ValueError:
                continue
            number = int(value) if whole and value.is_integer() else value
            if name is None:
                into.step = number
            else:
                into.values[name] = number
        return into


_NOTHING = _Shape(())  # a line that holds no metric
_READS = operator.attrgetter("reads")


def _last_of_each(framed: bytes, framing: bytes, known: _Shape, original: bytes, lines: Sequence[str]) -> list[int]:
    """The positions in ``framed`` of the last line of ``framing`` with each set of digits in its names.

    ``original``: ``framed`` with the digits kept, when the lines are ASCII (then a character's offset in a
    line is its byte's); else b"" and the lines are counted.
    """
    last: dict[Any, int] = {}
    position = framed.find(framing)
    if original:
        digits, size = operator.itemgetter(*(1 + at for at in known.digits)), len(framing)
        while position >= 0:
            last[digits(original[position : position + size])] = position
            position = framed.find(framing, position + 1)
        return list(last.values())
    number, start = 0, 0
    while position >= 0:
        number += framed.count(b"\x00", start, position)
        start = position
        last["".join(lines[number][at] for at in known.digits)] = position
        position = framed.find(framing, position + 1)
    return list(last.values())


_STEP = "\x00step"  # what a step is recorded under (compared by identity: no printed name is this object)


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
        self._shapes: dict[bytes, _Shape] = {}  # what lines of each shape hold (see _feed_shapes)
        self._recent: list[bytes] = []  # the shapes of the last groups read by shape

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

        With the built-in forms the patterns run once per line shape, not once
        per line (a chatty script prints hundreds of thousands): the lines are
        joined and their shapes taken in C; once the history is full, only the
        last line of each shape in ``lines`` is read in Python. User-given
        patterns run once over the lines joined (in C); once the history is
        full, over the last :data:`TAIL_LINES` of ``lines``.
        """
        with self._lock:
            self._feed(lines)

    def _feed(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        full = len(self._closed) >= MAX_HISTORY
        if self._builtin:
            try:
                shaped: bytes | None = "\n".join(lines).encode().translate(_ZERO_DIGITS)
            except UnicodeEncodeError:  # a lone surrogate
                shaped = None
            if shaped is not None:
                if full and self._feed_one_shape(lines, shaped):
                    return
                if shaped.count(b"\n") == len(lines) - 1 and b"\x00" not in shaped and b"\x01" not in shaped:
                    if full:
                        self._feed_shapes(lines, shaped)
                    else:
                        self._feed_lines(lines, shaped)
                    return
        elif full:
            lines = lines[-TAIL_LINES:]
        found = self._scan(lines)
        for number in sorted(found):
            self._add(found[number], lines[number] if number < len(lines) else "")

    def _feed_lines(self, lines: Sequence[str], shaped: bytes) -> None:
        """Every line, each read as its shape says (the patterns run once over the lines of shapes not seen yet).

        Once the history is full, the rest as :meth:`_feed_shapes` reads it.
        """
        closed, split = self._closed, shaped.split(b"\n")
        shapes = self._known(lines, numbers := dict(zip(split, range(len(split)))))
        if not any(map(_READS, map(shapes.__getitem__, numbers))):
            return  # no line holds a metric
        known = map(shapes.__getitem__, split)
        for number, (line, shape, holds) in enumerate(zip(lines, split, known, strict=True)):
            if len(closed) >= MAX_HISTORY:
                self._feed_shapes(lines[number:], b"\n".join(split[number:]))
                return
            if holds.reads:
                self._add((holds if holds.exact else self._exact(shape, holds, line)).read(line), line)

    def _scan(self, lines: Sequence[str]) -> dict[int, _Line]:
        """What each line of ``lines`` holds, by line number (lines with nothing left out)."""
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
                    self._put(into, match["wanted"], match["value"], match.span("value"), match.span("wanted"))
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
        return found

    def _feed_one_shape(self, lines: Sequence[str], shaped: bytes) -> bool:
        """:meth:`_feed_shapes` for the common case, in a few steps: every line has the shape of the last group's."""
        if not self._recent:
            return False
        shape = self._recent[0]
        known = self._shapes.get(shape)
        if known is None or not known.exact or (shape + b"\n") * len(lines) != shaped + b"\n":
            return False
        if known.reads:
            self._add(known.read(lines[-1]), lines[-1])
        return True

    def _feed_shapes(self, lines: Sequence[str], shaped: bytes) -> None:
        """Once the history is full: read the last line holding each metric, in C but for a few lines a group.

        That is each shape's last line, unless later lines hold all its names; every
        other line of a shape holds the same names, at values that came
        before. The lines read go to :meth:`_add` in their order, each value-only
        line after the last step-bearing line before it (and the group's first
        step-bearing line while configuration echoes may still come). The
        final values and the step are what reading every line gives; the records
        handed on are the latest of each metric per group.
        """
        count = len(lines)
        # Each line between \x00 and \x01: a shape found with them around it is a whole line.
        framed = b"\x00" + shaped.replace(b"\n", b"\x01\x00") + b"\x01"
        last: dict[bytes, int] = {}  # shape -> the position in framed of its last line
        seen = 0
        for shape in self._recent:  # most groups hold the shapes of the last ones
            framing = b"\x00" + shape + b"\x01"
            found = framed.count(framing) if shape in self._shapes else 0
            if found:
                last[shape] = framed.rfind(framing)
                seen += found
        if seen == count:
            shapes: Mapping[bytes, _Shape] = {shape: self._shapes[shape] for shape in last}
        else:  # list them all: each shape's last line, and where it starts in framed
            split = shaped.split(b"\n")
            numbers = dict(zip(split, range(count)))
            lengths = [0, *itertools.accumulate(map(len, split))]
            last = {shape: lengths[number] + 2 * number for shape, number in numbers.items()}
            shapes = self._known(lines, numbers)
        # The latest first; none when the group had more shapes than are counted (the next is listed at once).
        self._recent = sorted(last, key=last.__getitem__, reverse=True) if len(last) <= _RECENT else []
        chosen: dict[int, tuple[bytes, _Shape]] = {}  # the lines to read, by their position in framed
        original: bytes | None = None  # the lines framed as in framed, digits kept (b"": not ASCII)
        stepped: list[tuple[bytes, bytes, _Shape]] = []  # the shapes that name a step
        single: list[int] = []  # the lines chosen that hold values and no step
        covered: set[str | None] = set()  # the names (None: the step) of the later lines chosen
        first: tuple[int, bytes, _Shape] | None = None  # the group's first step-bearing line
        for shape, position in sorted(last.items(), key=operator.itemgetter(1), reverse=True):
            known = shapes[shape]
            if not known.reads:
                continue
            framing = b"\x00" + shape + b"\x01"
            if known.stepped:
                stepped.append((shape, framing, known))
                at = -1 if self._stepped else framed.find(framing)
                if at >= 0 and (first is None or at < first[0]):
                    first = at, shape, known  # it ends the configuration echo
            if known.exact:
                if known.names <= covered:
                    continue  # a later line holds each of its names
                covered |= known.names
                positions = [position]
            else:  # the last line of each set of digits in its names
                if original is None:
                    data = "\n".join(lines).encode()
                    original = b"\x00" + data.replace(b"\n", b"\x01\x00") + b"\x01" if data.isascii() else b""
                positions = _last_of_each(framed, framing, known, original, lines)
            for at in positions:
                chosen[at] = shape, known
                if not known.stepped:
                    single.append(at)
        if first is not None:
            chosen[first[0]] = first[1], first[2]
        for position in single:  # its step: the last step-bearing line before it
            before, step_shape = -1, None
            for shape, framing, known in stepped:
                found = framed.rfind(framing, 0, position)
                if found > before:
                    before, step_shape = found, (shape, known)
            if step_shape is not None:
                chosen[before] = step_shape
        # Line numbers counted from the end: the lines read are mostly the last ones.
        ordered = sorted(chosen)
        counted, end, number = [], len(framed), count
        for position in reversed(ordered):
            number -= framed.count(b"\x00", position, end)
            counted.append(number)
            end = position
        for position, number in zip(ordered, reversed(counted), strict=True):
            line, (shape, known) = lines[number], chosen[position]
            self._add((known if known.exact else self._exact(shape, known, line)).read(line), line)

    def _known(self, lines: Sequence[str], numbers: Mapping[bytes, int]) -> dict[bytes, _Shape]:
        """What lines of each shape of ``numbers`` (shape -> the number of a line of it in ``lines``) hold.

        Remembered, or read from that line: the lines of shapes not seen before in one pass of the patterns.
        """
        shapes = self._shapes
        new = list(numbers.keys() - shapes.keys())
        if not new:
            return shapes
        learnt = dict(zip(new, self._learn(list(map(lines.__getitem__, map(numbers.__getitem__, new)))), strict=True))
        if len(shapes) + len(learnt) > _SHAPES:  # output of ever new shapes: remember this group's
            learnt.update({shape: shapes[shape] for shape in numbers.keys() & shapes.keys()})
            shapes.clear()
        shapes.update(learnt)
        return shapes

    def _learn(self, lines: Sequence[str]) -> list[_Shape]:
        """What lines of the shape of each of ``lines`` hold, read from it (one pass of the patterns)."""
        found = self._scan(lines)
        learnt = [_NOTHING] * len(lines)
        lengths = [0, *itertools.accumulate(map(len, lines))] if found else []
        for number, into in found.items():
            start = lengths[number] + number  # where the line starts in the lines joined
            line = lines[number]
            reads: list[tuple[str | None, int, int, bool]] = []
            digits: set[int] = set()
            for name, name_start, name_end, begin, end in into.puts:
                name_start, name_end, begin, end = name_start - start, name_end - start, begin - start, end - start
                digits.update(at for at in range(name_start, name_end) if "0" <= line[at] <= "9")
                recorded = self._recorded(name)
                if recorded is not None:
                    whole = _INTEGER.fullmatch(line[begin:end].strip()) is not None
                    reads.append((None if recorded is _STEP else recorded, begin, end, whole))
            learnt[number] = _Shape(tuple(reads), tuple(sorted(digits)))
        return learnt

    def _exact(self, shape: bytes, known: _Shape, line: str) -> _Shape:
        """What ``line`` (of ``shape``) holds, given the digits in its names: its own shape, learnt on first sight."""
        if known.exact:
            return known
        key = shape + b"\x00" + "".join(line[at] for at in known.digits).encode()
        exact = self._shapes.get(key)
        if exact is None:
            exact = _Shape(self._learn([line])[0].reads)
            if len(self._shapes) < _SHAPES:
                self._shapes[key] = exact
        return exact

    def _put_default(self, into: _Line, text: str, match: re.Match[str]) -> None:
        """A match of the built-in forms: the name as printed, with the qualifiers before it (``val loss``)."""
        start, end = match.span("n")
        name = text[start:end]
        if is_step(name):
            self._put(into, name, match["value"], match.span("value"), (start, end))
            return
        if match["of"] or (match["sep"] is None and not looks_like_metric(name)):
            return  # ``93/100`` is no value; ``gloss 5`` no metric
        line_start = text.rfind("\n", 0, start) + 1
        before = text[line_start:start].rstrip("'\"")
        qualified = _QUALIFIED.search(before) if before.endswith((" ", "\t")) else None
        if qualified is not None:
            name = before[qualified.start() :] + name
            start = line_start + qualified.start()
        self._put(into, name, match["value"], match.span("value"), (start, end))

    def _put(
        self,
        into: _Line,
        name: str | None,
        value: str | None,
        span: tuple[int, int] | None = None,
        printed: tuple[int, int] | None = None,
    ) -> None:
        """Read ``value`` as ``name``'s; ``span``, ``printed``: where the value and the name are (built-in forms)."""
        if not name or value is None:
            return
        if span is not None and printed is not None:
            into.puts.append((name, *printed, *span))
        number = _number(value)
        if number is None:
            return
        recorded = self._recorded(name)
        if recorded is _STEP:
            into.step = number
        elif recorded is not None:
            into.values[recorded] = number

    def _recorded(self, name: str) -> str | None:
        """The name a printed value is recorded under: :data:`_STEP` for the step, None for none (a parameter)."""
        key = metric_key(name)
        if key in STEP_KEYS:
            return _STEP
        if key in self._wanted:
            return self._wanted[key]
        if key in self._excluded:
            return None
        return " ".join(name.split())

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
        progress = _PROGRESS.search(text) if "[" in text else None
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
