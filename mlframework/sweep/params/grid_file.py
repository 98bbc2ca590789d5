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
* Loading is safe: nodes are composed by :class:`yaml.SafeLoader` and walked here
  (with the shared YAML layer, :mod:`mlframework.sweep.params.yaml_layer`);
  nothing is constructed from a tag but the plain scalars above and the tuple.
  Any other ``!!python/...`` tag, nested mappings and duplicate names are errors.

Order: parameters in file order, the first varying slowest (see :mod:`mlframework.sweep.params.grid`).

Errors. Every problem is one :class:`~mlframework.exceptions.GridError` line:
``{source}:{line}: parameter '{name}': {problem}`` (line 1-based), or
``{source}[:{line}]: {problem}`` for problems of the file as a whole.

Rendering values as a trial's options (``render_options``, ``format_value``) is
:mod:`mlframework.sweep.params.arguments`.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlframework.sweep.params.grid import Grid, Interval, Parameter, Scalar, Value, grid_error, interval_bounds
from mlframework.sweep.params.yaml_layer import (
    NAME_PATTERN,
    SEARCH_TAGS,
    TAG_FLOAT,
    TAG_INT,
    TAG_MAP,
    TAG_SEQ,
    TAG_TUPLE,
    NodeProblem,
    check_tag,
    compose_root,
    construct_number,
    describe_node,
    load_file,
    parameter_entries,
    scalar,
)

__all__ = [
    "grid_from_mapping",
    "load_grid",
    "node_values",
    "parse_grid",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- loading


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read a parameters.yml; ``source`` in the grid and in errors is ``path`` as given."""
    return load_file(path, parse_grid)


def parse_grid(text: str | bytes, source: str = "<string>") -> Grid:
    """Parse the text of a parameters.yml (see the module docstring for the grammar)."""
    root = compose_root(text, source)
    parameters = list(parameter_entries(root, source, _parameter))
    grid = Grid(tuple(parameters), source)
    log.debug("%s: %d parameter(s), %d combination(s)", source, len(parameters), grid.count)
    return grid


def _parameter(name: str, node: Node, line: int) -> Parameter:
    return Parameter(name, node_values(node), line)


def node_values(node: Node) -> Sequence[Any]:
    """The values of one grid parameter's node: a tuple of values, or an :class:`Interval`."""
    check_tag(node)
    if node.tag in SEARCH_TAGS:
        raise NodeProblem(node, f"{node.tag} is a search distribution: search it with --trials N --metric NAME")
    if node.tag == TAG_TUPLE:
        return _interval(node)
    if isinstance(node, SequenceNode) and node.tag == TAG_SEQ:
        if not node.value:
            raise NodeProblem(node, "empty list; give at least one value")
        return tuple(_list_item(item) for item in node.value)
    if isinstance(node, MappingNode) and node.tag == TAG_MAP:
        raise NodeProblem(
            node,
            "nested mappings are not supported in a grid; give a value, a list or an interval "
            "(a mapping of choices to their own parameters is a conditional search parameter: "
            "search it with --trials N)",
        )
    return (scalar(node),)


def _list_item(node: Node) -> Value:
    """One item of a list of values: a scalar, or a list of scalars given as one value."""
    check_tag(node)
    if isinstance(node, SequenceNode) and node.tag == TAG_SEQ:
        if not node.value:
            raise NodeProblem(node, "empty list as a value; a list value holds at least one item")
        return [_list_value_item(item) for item in node.value]
    if not isinstance(node, ScalarNode):
        what = "an interval" if node.tag == TAG_TUPLE else describe_node(node)
        raise NodeProblem(node, f"list items must be single values or lists of them, found {what}")
    return scalar(node)


def _list_value_item(node: Node) -> Scalar:
    check_tag(node)
    if not isinstance(node, ScalarNode):
        what = "an interval" if node.tag == TAG_TUPLE else describe_node(node)
        raise NodeProblem(node, f"the items of a list value must be single values, found {what}")
    return scalar(node)


def _interval(node: Node) -> Interval:
    if not isinstance(node, SequenceNode):
        raise NodeProblem(node, "!!python/tuple must be a list [start, end] or [start, end, step]")
    if len(node.value) not in (2, 3):
        raise NodeProblem(node, f"an interval is [start, end] or [start, end, step], found {len(node.value)} value(s)")
    bounds: list[Decimal] = []
    for item in node.value:
        check_tag(item)
        if not isinstance(item, ScalarNode) or item.tag not in (TAG_INT, TAG_FLOAT):
            raise NodeProblem(item, f"interval bounds must be numbers, found {describe_node(item)}")
        bounds.append(_source_decimal(item))
    integers = all(item.tag == TAG_INT for item in node.value)
    try:
        return Interval(*interval_bounds(bounds), integers=integers)
    except ValueError as exc:
        raise NodeProblem(node, str(exc)) from None


def _source_decimal(node: ScalarNode) -> Decimal:
    """The number as written (``0.1`` is exactly 1/10), else the parsed value's repr."""
    value = construct_number(node)
    if node.tag == TAG_FLOAT:
        try:
            number = Decimal(node.value.replace("_", ""))
        except InvalidOperation:  # sexagesimal 1:30.5, .inf, .nan
            number = Decimal(repr(value))
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise NodeProblem(node, f"interval bounds must be finite, found {node.value!r}")
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
        raise grid_error(source, 0, None, f"expected a mapping of parameter names to values, found {found}")
    parameters = []
    for name, value in mapping.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise grid_error(source, 0, None, f"parameter name {name!r} is not a valid option name")
        try:
            parameters.append(Parameter(name, _python_values(value)))
        except (NodeProblem, ValueError) as exc:
            raise grid_error(source, 0, name, str(exc)) from None
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
