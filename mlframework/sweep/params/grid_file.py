"""parameters.yml (or a dict) -> a lazy :class:`~mlframework.sweep.params.grid.Grid`: the grid grammar, loaded safely.

Grammar. A parameters.yml is one YAML mapping of parameter name to value::

    gpu: -1                           # one value       -> --gpu=-1 in every combination
    batchsize: [100, 500]             # a list          -> each listed value
    epoch: !!python/tuple [5, 20, 5]  # an interval     -> 5, 10, 15 (end excluded)
    lr: !!python/tuple [0.1, 0.5, 0.1]  #               -> 0.1, 0.2, 0.3, 0.4 (exactly)
    seed: !!python/tuple [0, 3]       # step 1 if left out -> 0, 1, 2
    verbose: true                     # true -> bare --verbose; false -> option left out
    layers: [[64, 64], [128]]         # list values     -> the value [64, 64], then [128]

* Names match ``[A-Za-z_][A-Za-z0-9_.-]*``; each appears once.
* Values are scalars: int, float, bool or string (a timestamp-looking scalar stays
  the string written). null is an error.
* A list's items are its values, each a scalar or a list of scalars; a list item
  is ONE value, a list (``layers: [[64, 64]]`` is the single value ``[64, 64]``,
  ``--layers 64 64`` for a script that takes lists, see
  :mod:`mlframework.sweep.params.arguments`). A list value is not empty and holds no
  lists, mappings or intervals. (So a top-level list keeps its seed meaning, each
  item in turn, and a nested list, an error before lists were values, means one
  list value.)
* ``!!python/tuple [start, end]`` or ``[start, end, step]`` is the half-open
  interval [start, end) in steps of ``step`` (which may be negative; never 0). Its
  arithmetic is exact, in :class:`decimal.Decimal` built from the text written:
  value i is ``start + i*step`` and there are ``ceil((end - start) / step)`` values.
  The values are ints when start, end and step are all ints, else the float whose
  repr is the exact decimal (``0.1 + 2*0.1`` gives ``0.3``).
* Loading is safe: nodes are composed by :class:`yaml.SafeLoader` and walked here;
  nothing is constructed from a tag but the plain scalars above and the tuple.
  Any other ``!!python/...`` tag, nested mappings and duplicate names are errors.

Order: parameters in file order, the first varying slowest (see :mod:`mlframework.sweep.params.grid`).

Errors. Every problem is one :class:`~mlframework.exceptions.GridError` line:
``{source}:{line}: parameter '{name}': {problem}`` (line 1-based), or
``{source}[:{line}]: {problem}`` for problems of the file as a whole.

Rendering (:func:`render_options`, :func:`format_value`) is :mod:`mlframework.sweep.params.arguments`;
both are importable from here as before.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlframework.sweep.params.grid import Grid, Interval, Parameter, Scalar, Value, grid_error, interval_bounds

__all__ = [
    "SEARCH_TAGS",
    "compose_root",
    "grid_from_mapping",
    "load_grid",
    "parse_grid",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

_YAML = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_YAML + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP, _SEQ, _MAP = _YAML + "timestamp", _YAML + "seq", _YAML + "map"
_TUPLE = _YAML + "python/tuple"


# --------------------------------------------------------------------------- loading


class _Problem(Exception):
    """A problem with one node, before the parameter name is attached."""

    def __init__(self, node: Node | None, text: str) -> None:
        super().__init__(text)
        self.line = node.start_mark.line + 1 if node is not None and node.start_mark else 0
        self.text = text


_error = grid_error  # the one-line GridError (name kept for mlframework.sweep.params.space)


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read a parameters.yml; ``source`` in the grid and in errors is ``path`` as given."""
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise _error(source, 0, None, "file not found") from None
    except IsADirectoryError:
        raise _error(source, 0, None, "is a directory, not a parameters file") from None
    except OSError as exc:
        raise _error(source, 0, None, f"cannot read: {exc.strerror or exc}") from None
    return _parse(data, source)


def parse_grid(text: str, source: str = "<string>") -> Grid:
    """Parse the text of a parameters.yml (see the module docstring for the grammar)."""
    return _parse(text, source)


def _parse(stream: str | bytes, source: str) -> Grid:
    root = compose_root(stream, source)
    parameters: list[Parameter] = []
    lines: dict[str, int] = {}
    for key, value in root.value:
        line = key.start_mark.line + 1
        try:
            name = _name(key)
        except _Problem as problem:
            raise _error(source, problem.line, None, problem.text) from None
        if name in lines:
            raise _error(source, line, name, f"given more than once (first on line {lines[name]})")
        lines[name] = line
        try:
            values = _values(value)
        except _Problem as problem:
            raise _error(source, problem.line or line, name, problem.text) from None
        parameters.append(Parameter(name, values, line))
    grid = Grid(tuple(parameters), source)
    log.debug("%s: %d parameter(s), %d combination(s)", source, len(parameters), grid.count)
    return grid


def compose_root(stream: str | bytes, source: str) -> MappingNode:
    """The file's top-level mapping node, composed safely (also used by :mod:`mlframework.sweep.params.space`)."""
    try:
        loader = yaml.SafeLoader(stream)  # composes nodes only; we never call its constructor
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise _error(source, mark.line + 1 if mark else 0, None, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise _error(source, 0, None, f"cannot read YAML: {exc}") from None
    except RecursionError:
        raise _error(source, 0, None, "YAML nested too deeply") from None
    if root is None:
        raise _error(source, 0, None, "empty file; expected a mapping of parameter names to values")
    try:
        _check_tag(root)
        if isinstance(root, MappingNode) and root.tag != _MAP:
            raise _Problem(root, f"unsupported tag {_short(root.tag)}; expected a plain mapping")
        if not isinstance(root, MappingNode):
            raise _Problem(root, f"expected a mapping of parameter names to values, found {_kind(root)}")
    except _Problem as problem:
        raise _error(source, problem.line, None, problem.text) from None
    return root


def _short(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"the value {node.value!r}"


def _check_tag(node: Node) -> None:
    """Reject python tags (but the tuple) wherever they appear: nothing is ever built from them."""
    if node.tag.startswith(_YAML + "python/") and node.tag != _TUPLE:
        raise _Problem(node, f"unsafe tag {_short(node.tag)} is not allowed (parameters.yml is loaded safely)")


def _name(key: Node) -> str:
    _check_tag(key)
    if not isinstance(key, ScalarNode) or key.tag != _STR:
        raise _Problem(key, f"parameter names must be strings, found {_kind(key)}")
    if not _NAME.fullmatch(key.value):
        raise _Problem(
            key,
            f"parameter name {key.value!r} is not a valid option name "
            "(letters, digits, _ . -, not starting with a digit, . or -)",
        )
    return key.value


# Tags of a search space (mlframework/sweep/params/space.py): in a grid they only say what is missing.
SEARCH_TAGS = ("!uniform", "!loguniform", "!int")


def _values(node: Node) -> Sequence[Any]:
    _check_tag(node)
    if node.tag in SEARCH_TAGS:
        raise _Problem(node, f"{node.tag} is a search distribution: add --search (e.g. --search tpe --trials 50)")
    if node.tag == _TUPLE:
        return _interval(node)
    if isinstance(node, SequenceNode) and node.tag == _SEQ:
        if not node.value:
            raise _Problem(node, "empty list; give at least one value")
        return tuple(_list_item(item) for item in node.value)
    if isinstance(node, MappingNode) and node.tag == _MAP:
        raise _Problem(
            node,
            "nested mappings are not supported in a grid; give a value, a list or an interval "
            "(a mapping of choices to their own parameters is a conditional search parameter: add --search)",
        )
    return (_scalar(node),)


def _list_item(node: Node) -> Value:
    """One item of a list of values: a scalar, or a list of scalars given as one value."""
    _check_tag(node)
    if isinstance(node, SequenceNode) and node.tag == _SEQ:
        if not node.value:
            raise _Problem(node, "empty list as a value; a list value holds at least one item")
        return [_list_value_item(item) for item in node.value]
    if not isinstance(node, ScalarNode):
        what = "an interval" if node.tag == _TUPLE else _kind(node)
        raise _Problem(node, f"list items must be single values or lists of them, found {what}")
    return _scalar(node)


def _list_value_item(node: Node) -> Scalar:
    _check_tag(node)
    if not isinstance(node, ScalarNode):
        what = "an interval" if node.tag == _TUPLE else _kind(node)
        raise _Problem(node, f"the items of a list value must be single values, found {what}")
    return _scalar(node)


def _scalar(node: Node) -> Scalar:
    if not isinstance(node, ScalarNode):
        raise _Problem(node, f"unsupported tag {_short(node.tag)}")
    tag, text = node.tag, node.value
    if tag == _NULL:
        raise _Problem(node, "has no value (null); give a value, or true/false for a flag")
    if tag in (_STR, _TIMESTAMP):  # a date stays the text written
        if "\0" in text:
            raise _Problem(node, "values must not contain NUL characters")
        return text
    if tag in (_INT, _FLOAT, _BOOL):
        return _construct(node)
    raise _Problem(node, f"unsupported tag {_short(tag)}")


def _construct(node: ScalarNode) -> Scalar:
    """An int, float or bool scalar, through PyYAML's safe constructor for that one node."""
    method = {_INT: "construct_yaml_int", _FLOAT: "construct_yaml_float", _BOOL: "construct_yaml_bool"}[node.tag]
    try:
        return getattr(_CONSTRUCTOR, method)(node)
    except (ValueError, KeyError, TypeError, ArithmeticError):
        raise _Problem(node, f"{node.value!r} is not a valid {_short(node.tag)}") from None


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _interval(node: Node) -> Interval:
    if not isinstance(node, SequenceNode):
        raise _Problem(node, "!!python/tuple must be a list [start, end] or [start, end, step]")
    if len(node.value) not in (2, 3):
        raise _Problem(node, f"an interval is [start, end] or [start, end, step], found {len(node.value)} value(s)")
    bounds: list[Decimal] = []
    for item in node.value:
        _check_tag(item)
        if not isinstance(item, ScalarNode) or item.tag not in (_INT, _FLOAT):
            raise _Problem(item, f"interval bounds must be numbers, found {_kind(item)}")
        bounds.append(_source_decimal(item))
    integers = all(item.tag == _INT for item in node.value)
    try:
        return Interval(*interval_bounds(bounds), integers=integers)
    except ValueError as exc:
        raise _Problem(node, str(exc)) from None


def _source_decimal(node: ScalarNode) -> Decimal:
    """The number as written (``0.1`` is exactly 1/10), else the parsed value's repr."""
    value = _construct(node)
    if node.tag == _FLOAT:
        try:
            number = Decimal(node.value.replace("_", ""))
        except InvalidOperation:  # sexagesimal 1:30.5, .inf, .nan
            number = Decimal(repr(value))
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise _Problem(node, f"interval bounds must be finite, found {node.value!r}")
    return number


# --------------------------------------------------------------------------- from Python


def grid_from_mapping(mapping: Mapping[str, Any], source: str = "<mapping>") -> Grid:
    """A grid from a dict, for notebooks: same rules as parameters.yml, in the dict's order.

    Values: a scalar, a list of values (each a scalar, or a list of scalars that
    is one value), a tuple ``(start, end[, step])`` meaning an interval (floats
    taken as their repr: ``0.1`` is exactly 1/10), a ``range`` or an
    :class:`Interval`. Lines are 0, so errors read ``{source}: parameter ...``.
    """
    if not isinstance(mapping, Mapping):
        found = type(mapping).__name__
        raise _error(source, 0, None, f"expected a mapping of parameter names to values, found {found}")
    parameters = []
    for name, value in mapping.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _error(source, 0, None, f"parameter name {name!r} is not a valid option name")
        try:
            parameters.append(Parameter(name, _python_values(value)))
        except (_Problem, ValueError) as exc:
            raise _error(source, 0, name, str(exc)) from None
    return Grid(tuple(parameters), source)


def _python_values(value: Any) -> Sequence[Any]:
    if isinstance(value, Interval):
        return value
    if isinstance(value, range):
        return Interval(Decimal(value.start), Decimal(value.stop), Decimal(value.step), integers=True)
    if isinstance(value, tuple):
        if len(value) not in (2, 3):
            raise ValueError(f"an interval is (start, end) or (start, end, step), found {len(value)} value(s)")
        for bound in value:
            if isinstance(bound, bool) or not isinstance(bound, (numbers.Real, Decimal)):
                raise ValueError(f"interval bounds must be numbers, found {bound!r}")
        integers = all(isinstance(b, numbers.Integral) for b in value)
        bounds = [
            Decimal(int(b))
            if isinstance(b, numbers.Integral)
            else b
            if isinstance(b, Decimal)
            else Decimal(repr(float(b)))
            for b in value
        ]
        return Interval(*interval_bounds(bounds), integers=integers)
    if isinstance(value, Mapping):
        raise ValueError("nested mappings are not supported; give a value, a list or an interval")
    if isinstance(value, list):
        if not value:
            raise ValueError("empty list; give at least one value")
        return tuple(_python_list_item(item) for item in value)
    return (_python_scalar(value),)


def _python_list_item(item: Any) -> Value:
    if isinstance(item, list):
        if not item:
            raise ValueError("empty list as a value; a list value holds at least one item")
        return [_python_scalar(inner, in_list=True) for inner in item]
    return _python_scalar(item, in_list=True)


def _python_scalar(value: Any, in_list: bool = False) -> Scalar:
    if value is None:
        raise ValueError("has no value (None); give a value, or True/False for a flag")
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError("values must not contain NUL characters")
        return value
    what = "list items" if in_list else "values"
    raise ValueError(f"{what} must be int, float, bool or str, found {type(value).__name__}")
