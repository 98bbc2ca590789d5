"""A grid's combinations: exact lazy intervals, parameters, and their cartesian product (pure).

Order. Combinations are the cartesian product of the parameters in order, the
FIRST parameter varying slowest and the last fastest, as :func:`itertools.product`.
Combination ``i`` is computed directly from ``i`` in mixed radix (O(number of
parameters)), so a grid of 10**12 points can be counted, indexed and started
without being expanded; intervals are never lists.

Values. A parameter's values are scalars (int, float, bool, str) or lists of
scalars (one value that a script may take as several arguments, see
:mod:`mlframework.sweep.params.arguments`). A list value is given to every combination
as the same ``list`` object: read it, do not change it.

Reading a grid from parameters.yml or a dict is :mod:`mlframework.sweep.params.grid_file`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mlframework.exceptions import GridError

Scalar = int | float | bool | str
Value = Scalar | list[Scalar]  # one value of a parameter: a scalar, or a list given as one value

_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_MAX_DIGITS = 1000  # digits + |exponent| of an interval bound: keeps the exact arithmetic cheap


def grid_error(source: str, line: int, name: str | None, problem: str) -> GridError:
    """The one-line error ``{source}:{line}: parameter '{name}': {problem}`` (line and name when known)."""
    where = f"{source}:{line}" if line else source
    text = f"{where}: parameter '{name}': {problem}" if name is not None else f"{where}: {problem}"
    error = GridError(_LINE_BREAKS.sub(" ", text))
    error.source, error.line, error.parameter = source, line, name  # type: ignore[attr-defined]
    return error


@dataclass(frozen=True, repr=False)
class Interval(Sequence[int | float]):
    """The values ``start, start+step, ...`` below ``end`` (above it for a negative step).

    Exact and lazy: ``len()``, ``[i]`` and iteration compute each value from its
    index; nothing is stored. ``integers`` (inferred: all three given as ``int``)
    makes the values ints, else floats rendered as the exact decimal. Raises
    ValueError for a zero step, an empty interval or an unusable bound.
    """

    start: Decimal
    end: Decimal
    step: Decimal = Decimal(1)
    integers: bool | None = None
    _start: int = field(init=False, compare=False)  # start, end and step as integers scaled by 10**-_exp
    _step: int = field(init=False, compare=False)
    _exp: int = field(init=False, compare=False)
    _size: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        bounds = (self.start, self.end, self.step)
        integers = self.integers
        if integers is None:
            integers = all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        decimals = tuple(_decimal(b) for b in bounds)
        start, end, step = decimals
        if step == 0:
            raise ValueError("interval step must not be 0")
        if integers and any(d != d.to_integral_value() for d in decimals):
            raise ValueError("integer interval with a fractional bound")
        if not integers and not all(math.isfinite(float(d)) for d in decimals):
            raise ValueError("interval bound out of float range")
        if integers:
            exp, (s, e, t) = 0, (int(d) for d in decimals)
        else:
            exp = min(int(d.as_tuple().exponent) for d in decimals)
            s, e, t = (_scaled(d, exp) for d in decimals)
        size = -((s - e) // t)  # ceil((e - s) / t), exact, for either sign of t
        if size <= 0:
            raise ValueError(f"interval [{start}, {end}) with step {step} yields no values")
        for name, value in (
            ("start", start),
            ("end", end),
            ("step", step),
            ("integers", integers),
            ("_start", s),
            ("_step", t),
            ("_exp", exp),
            ("_size", size),
        ):
            object.__setattr__(self, name, value)

    @property
    def size(self) -> int:
        """Number of values; unlike ``len()`` not limited to ``sys.maxsize``."""
        return self._size

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return True  # never empty; and len() would overflow past sys.maxsize

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        i = operator.index(index)
        if i < 0:
            i += self._size
        if not 0 <= i < self._size:
            raise IndexError(f"interval index {index} out of range ({self._size} values)")
        return self._value(i)

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._size):
            yield self._value(i)

    def _value(self, i: int) -> int | float:
        n = self._start + i * self._step
        if self.integers:
            return n
        return float(str(Decimal(f"{n}E{self._exp}")))

    def __repr__(self) -> str:
        return f"Interval({self.start}, {self.end}, {self.step}{'' if self.integers else ', floats'})"


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"interval bounds must be int or Decimal, not {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"interval bound {number} is not a finite number")
    _sign, digits, exponent = number.as_tuple()
    if len(digits) + abs(exponent) > _MAX_DIGITS:  # type: ignore[arg-type]
        raise ValueError("interval bound has too many digits")
    return number


def interval_bounds(bounds: Sequence[Decimal]) -> tuple[Decimal, Decimal, Decimal]:
    """``[start, end]`` or ``[start, end, step]`` as the three of an :class:`Interval` (step 1 by default)."""
    return (bounds[0], bounds[1], bounds[2] if len(bounds) > 2 else Decimal(1))


def _scaled(number: Decimal, exp: int) -> int:
    """``number * 10**-exp`` as an exact int (``exp`` <= the number's exponent)."""
    sign, digits, exponent = number.as_tuple()
    n: int = int("".join(map(str, digits)) or "0") * 10 ** (exponent - exp)  # type: ignore[operator]
    return -n if sign else n


@dataclass(frozen=True)
class Parameter:
    """One parameter of a grid, in file order."""

    name: str  # the option name: --name=value
    values: Sequence[Any]  # a tuple of values (scalars, or lists of scalars), or a lazy Interval
    line: int = 0  # 1-based line in the source; 0 when not from a file

    @property
    def size(self) -> int:
        """Number of values (not limited to ``sys.maxsize``)."""
        return self.values.size if isinstance(self.values, Interval) else len(self.values)


@dataclass(frozen=True)
class Grid:
    """The cartesian product of its parameters: first varies slowest, computed lazily."""

    parameters: tuple[Parameter, ...]
    source: str = "<grid>"  # the file (as given) or "<string>" / "<mapping>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        seen: set[str] = set()
        for p in self.parameters:
            if p.name in seen:
                raise grid_error(self.source, p.line, p.name, "given more than once")
            seen.add(p.name)

    @property
    def names(self) -> list[str]:
        """Parameter names in order."""
        return [p.name for p in self.parameters]

    @property
    def count(self) -> int:
        """Number of combinations (product of sizes; 1 for no parameters); never expands."""
        return math.prod(p.size for p in self.parameters)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0  # not via len(), which overflows past sys.maxsize

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Combination ``index`` (negative counts from the end), by mixed-radix digits."""
        count = self.count
        i = operator.index(index)
        if i < 0:
            i += count
        if not 0 <= i < count:
            raise IndexError(f"combination {index} out of range ({count} combinations)")
        return {p.name: p.values[d] for p, d in zip(self.parameters, self._digits(i))}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[dict[str, Any]]:
        """Combinations from index ``start`` on, lazily; same as ``list(grid)[start:]``."""
        count = self.count
        start = operator.index(start)
        if start < 0:
            start = max(0, start + count)
        return self._iterate(start, count)

    def _digits(self, index: int) -> list[int]:
        digits = []
        for p in reversed(self.parameters):
            index, digit = divmod(index, p.size)
            digits.append(digit)
        return digits[::-1]

    def _iterate(self, start: int, count: int) -> Iterator[dict[str, Any]]:
        if start >= count:
            return
        params, names = self.parameters, self.names
        sizes = [p.size for p in params]
        digits = self._digits(start)
        current = [p.values[d] for p, d in zip(params, digits)]
        while True:
            yield dict(zip(names, current))
            j = len(params) - 1
            while j >= 0:  # odometer: bump the last digit, carry to the left
                digits[j] += 1
                if digits[j] < sizes[j]:
                    current[j] = params[j].values[digits[j]]
                    break
                digits[j] = 0
                current[j] = params[j].values[0]
                j -= 1
            else:
                return
