"""Search spaces in parameters.yml: the distributions a ``--search`` samples from (pure: no I/O but the file).

Grammar. The grid grammar of :mod:`mlframework.sweep.params.grid_file`, read for a search,
plus four tags (accepted by this safe loader only; a grid rejects them)::

    lr: !loguniform [1.0e-4, 1.0e-1]   # a float, log scale (low > 0)
    dropout: !uniform [0.0, 0.5]       # a float, linear scale
    unit: !int [16, 512, log]          # an int in [16, 512] (both included), log scale
    epoch: !int [5, 20]                # an int in [5, 20], step 1
    batchsize: !int [64, 512, 64]      # 64, 128, ..., 512 (high - low a multiple of step)
    activation: [relu, tanh]           # a list: a categorical choice
    layers: [[64, 64], [128]]          # list values: a choice among them
    seed: !!python/tuple [0, 10, 2]    # an interval: the choice of its values, in order
    gpu: -1                            # a single value: fixed, passed to every trial

Conditional parameters. A mapping is a categorical choice whose choices carry
parameters of their own, sampled (and passed to the trial) only when that
choice is made; a choice with no parameters of its own is ``{}`` or empty::

    optimizer:
      sgd:
        momentum: !uniform [0.0, 0.99]
      adam:
        beta1: !uniform [0.8, 0.999]
      rmsprop: {}

A trial of this space gets ``--optimizer=sgd --momentum=0.42`` or
``--optimizer=rmsprop``. Branches nest. Choices are single values (strings,
numbers, booleans); a parameter name appears once in the whole file. Nothing
is evaluated: no expressions, no code, only the nodes above.

Errors are the grid's: one :class:`~mlframework.exceptions.GridError` line
``{source}:{line}: parameter '{name}': {problem}``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlframework.exceptions import GridError
from mlframework.sweep.params.arguments import format_value
from mlframework.sweep.params.grid import Interval, grid_error
from mlframework.sweep.params.grid_file import node_values
from mlframework.sweep.params.yaml_layer import (
    SEARCH_TAGS,
    TAG_FLOAT,
    TAG_INT,
    TAG_MAP,
    TAG_NULL,
    TAG_STR,
    NodeProblem,
    check_tag,
    compose_root,
    describe_node,
    load_file,
    parameter_entries,
    scalar,
)

UNIFORM, LOGUNIFORM, INT, CATEGORICAL, INTERVAL, FIXED = (
    "uniform",
    "loguniform",
    "int",
    "categorical",
    "interval",
    "fixed",
)
_MAX_GRID_POINTS = 1_000_000  # --search grid lists every point: a bigger space is an error
_EXPONENT_ONLY = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class Dimension:
    """One parameter of a search space and how it is sampled."""

    name: str
    kind: str  # UNIFORM, LOGUNIFORM, INT, CATEGORICAL, INTERVAL or FIXED
    line: int = 0
    low: float | int | None = None  # UNIFORM, LOGUNIFORM, INT
    high: float | int | None = None
    step: int | None = None  # INT (None: 1)
    log: bool = False  # INT on a log scale (LOGUNIFORM is log by its kind)
    choices: tuple[Any, ...] = ()  # CATEGORICAL (a FIXED value is choices[0])
    interval: Interval | None = None  # INTERVAL
    branches: tuple[tuple[Any, tuple[Dimension, ...]], ...] = ()  # CATEGORICAL: (choice, its own parameters)

    @property
    def conditional(self) -> bool:
        """A choice some of whose choices bring parameters of their own."""
        return any(children for _choice, children in self.branches)

    def describe(self) -> str:
        """The distribution in words, e.g. ``float in [0.0001, 0.1], log scale``."""
        if self.kind == FIXED:
            return f"fixed {format_value(self.choices[0])}"
        if self.kind in (UNIFORM, LOGUNIFORM):
            scale = "log scale" if self.kind == LOGUNIFORM else "linear"
            return f"float in [{format_value(self.low)}, {format_value(self.high)}], {scale}"
        if self.kind == INT:
            extra = ", log scale" if self.log else (f", step {self.step}" if self.step and self.step != 1 else "")
            return f"int in [{self.low}, {self.high}]{extra}"
        if self.kind == INTERVAL:
            assert self.interval is not None
            values = self.interval
            shown = ", ".join(format_value(values[i]) for i in range(min(values.size, 3)))
            more = f", ... {format_value(values[-1])}" if values.size > 3 else ""
            return f"one of {values.size} values {shown}{more} (interval)"
        return "one of " + ", ".join(format_value(choice) for choice in self.choices)

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial (ask-and-tell) samples for this parameter."""
        if self.kind == FIXED:
            return self.choices[0]
        if self.kind in (UNIFORM, LOGUNIFORM):
            return trial.suggest_float(self.name, self.low, self.high, log=self.kind == LOGUNIFORM)
        if self.kind == INT:
            if self.log:
                return trial.suggest_int(self.name, self.low, self.high, log=True)
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1)
        if self.kind == INTERVAL:
            assert self.interval is not None
            # The index, not the value: exact decimals stay exact, and order (near = similar) is kept.
            index = trial.suggest_int(self.name + "#", 0, self.interval.size - 1)
            return self.interval[index]
        if self.indexed:
            return self.choices[trial.suggest_categorical(self.name + "#", list(range(len(self.choices))))]
        return trial.suggest_categorical(self.name, self.choices)

    @property
    def indexed(self) -> bool:
        """Sampled as the index of its value: an interval, or a choice among list values (Optuna stores scalars)."""
        return self.kind == INTERVAL or (
            self.kind == CATEGORICAL and any(isinstance(choice, list) for choice in self.choices)
        )

    def grid_values(self) -> list[Any]:
        """Every value this parameter can take, for Optuna's GridSampler; GridError when continuous."""
        if self.kind == FIXED:
            return [self.choices[0]]
        if self.kind == INT and not self.log:
            assert isinstance(self.low, int) and isinstance(self.high, int)
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.kind == INTERVAL:
            assert self.interval is not None
            return list(range(self.interval.size))
        if self.kind == CATEGORICAL and not self.conditional:
            return list(range(len(self.choices))) if self.indexed else list(self.choices)
        what = "a conditional choice" if self.kind == CATEGORICAL else f"!{self.kind}"
        raise NodeProblem(None, f"--search grid cannot list {what}; use another --search or list its values")


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a search, in file order (conditional ones under their choice)."""

    dimensions: tuple[Dimension, ...]
    source: str = "<space>"

    def walk(self) -> Iterator[tuple[int, Dimension]]:
        """Every dimension with its depth (0 at the top), parents before their branches' parameters."""

        def visit(dimensions: tuple[Dimension, ...], depth: int) -> Iterator[tuple[int, Dimension]]:
            for dimension in dimensions:
                yield depth, dimension
                for _choice, children in dimension.branches:
                    yield from visit(children, depth + 1)

        return visit(self.dimensions, 0)

    @property
    def names(self) -> list[str]:
        """Every parameter name, conditional ones included (the results' columns)."""
        return [dimension.name for _depth, dimension in self.walk()]

    @property
    def searched(self) -> bool:
        """Whether anything is sampled (False: every parameter is fixed)."""
        return any(d.kind != FIXED for _depth, d in self.walk())

    def sample(self, trial: Any) -> dict[str, Any]:
        """One trial's parameters, in file order, from an Optuna trial."""
        params: dict[str, Any] = {}

        def visit(dimensions: tuple[Dimension, ...]) -> None:
            for dimension in dimensions:
                value = dimension.suggest(trial)
                params[dimension.name] = value
                for choice, children in dimension.branches:
                    if children and _same(choice, value):
                        visit(children)

        visit(self.dimensions)
        return params

    def grid_space(self) -> dict[str, list[Any]]:
        """The search space of Optuna's GridSampler (the sampled parameters only)."""
        space: dict[str, list[Any]] = {}
        for _depth, dimension in self.walk():
            if dimension.kind == FIXED:
                continue
            try:
                values = dimension.grid_values()
            except NodeProblem as problem:
                raise grid_error(self.source, dimension.line, dimension.name, problem.text) from None
            space[dimension.name + ("#" if dimension.indexed else "")] = values
        if math.prod(len(v) for v in space.values()) > _MAX_GRID_POINTS:
            raise grid_error(self.source, 0, None, f"--search grid: more than {_MAX_GRID_POINTS} points")
        return space

    def describe(self) -> list[str]:
        """One line per parameter: ``name  distribution``, branch parameters indented under their choice."""
        width = max((len(d.name) + 2 * depth for depth, d in self.walk()), default=0)
        lines = [
            f"{'  ' * depth}{dimension.name:<{width - 2 * depth}}  {dimension.describe()}"
            for depth, dimension in self.walk()
        ]
        return _annotate_branches(self, lines)


def _annotate_branches(space: SearchSpace, lines: list[str]) -> list[str]:
    """Mark each branch parameter with the choice it belongs to."""
    owners: dict[str, str] = {}
    for _depth, dimension in space.walk():
        for choice, children in dimension.branches:
            for child in children:
                owners[child.name] = f"{dimension.name}={format_value(choice)}"
    out = []
    for (_depth, dimension), line in zip(space.walk(), lines):
        owner = owners.get(dimension.name)
        out.append(f"{line}   (only when {owner})" if owner else line)
    return out


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- loading


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read a parameters.yml as a search space; ``source`` in errors is ``path`` as given."""
    return load_file(path, parse_space)


def is_search_space(path: str | os.PathLike[str]) -> bool:
    """Whether the file uses what only a search has (distribution tags, conditional choices)."""
    try:
        space = load_space(path)
    except GridError:
        return False
    return any(d.kind in (UNIFORM, LOGUNIFORM, INT) or d.conditional for _depth, d in space.walk())


def parse_space(text: str | bytes, source: str = "<string>") -> SearchSpace:
    """Parse the text of a parameters.yml as a search space (see the module docstring)."""
    root = compose_root(text, source)
    seen: dict[str, int] = {}
    return SearchSpace(_dimensions(root, source, seen, depth=0), source)


_MAX_DEPTH = 20


def _dimensions(node: MappingNode, source: str, seen: dict[str, int], depth: int) -> tuple[Dimension, ...]:
    if depth > _MAX_DEPTH:
        raise grid_error(
            source, node.start_mark.line + 1, None, f"conditional parameters nested deeper than {_MAX_DEPTH}"
        )

    def build(name: str, value: Node, line: int) -> Dimension:
        return _dimension(name, value, line, source, seen, depth)

    return tuple(parameter_entries(node, source, build, seen))


def _dimension(name: str, node: Node, line: int, source: str, seen: dict[str, int], depth: int) -> Dimension:
    check_tag(node)
    if node.tag in (SEARCH_TAGS[0], SEARCH_TAGS[1]):
        low, high = _float_bounds(node)
        kind = UNIFORM if node.tag == SEARCH_TAGS[0] else LOGUNIFORM
        if kind == LOGUNIFORM and low <= 0:
            raise NodeProblem(node, f"!loguniform needs low > 0, found {format_value(low)}")
        return Dimension(name, kind, line, low=low, high=high)
    if node.tag == SEARCH_TAGS[2]:
        return _int_dimension(name, node, line)
    if isinstance(node, MappingNode) and node.tag == TAG_MAP:
        return _conditional(name, node, line, source, seen, depth)
    if isinstance(node, MappingNode):
        raise NodeProblem(node, f"unsupported tag {node.tag}")
    values = node_values(node)
    if isinstance(values, Interval):
        return Dimension(name, INTERVAL, line, interval=values)
    if len(values) == 1 and not isinstance(node, SequenceNode):
        return Dimension(name, FIXED, line, choices=tuple(values))
    if len(set(map(_key, values))) != len(values):
        raise NodeProblem(node, "a choice is listed more than once")
    return Dimension(name, CATEGORICAL, line, choices=tuple(values))


def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, tuple(map(_key, value)) if isinstance(value, list) else value)


def _numbers(node: Node, tag: str, count: tuple[int, ...]) -> list[ScalarNode]:
    if not isinstance(node, SequenceNode):
        raise NodeProblem(node, f"{tag} takes a list, e.g. {tag} [1, 10]")
    if len(node.value) not in count:
        forms = "[low, high]" if count == (2,) else "[low, high], [low, high, step] or [low, high, log]"
        raise NodeProblem(node, f"{tag} is {forms}, found {len(node.value)} value(s)")
    for item in node.value:
        check_tag(item)
        if not isinstance(item, ScalarNode):
            raise NodeProblem(item, f"{tag} bounds must be numbers, found {describe_node(item)}")
    return list(node.value)


def _float_bounds(node: Node) -> tuple[float, float]:
    tag = node.tag
    bounds = []
    for item in _numbers(node, tag, (2,)):
        if item.tag == TAG_STR and item.style is None and _EXPONENT_ONLY.fullmatch(item.value):
            value = float(item.value)  # 1e-5: a string to YAML 1.1 (no dot); as a bound it can only be the number
        elif item.tag not in (TAG_INT, TAG_FLOAT):
            raise NodeProblem(item, f"{tag} bounds must be numbers, found {describe_node(item)}")
        else:
            value = float(scalar(item))
        if not math.isfinite(value):
            raise NodeProblem(item, f"{tag} bounds must be finite, found {item.value!r}")
        bounds.append(value)
    low, high = bounds
    if not low < high:
        raise NodeProblem(node, f"{tag} needs low < high, found [{format_value(low)}, {format_value(high)}]")
    return low, high


def _int_dimension(name: str, node: Node, line: int) -> Dimension:
    items = _numbers(node, "!int", (2, 3))
    bounds = []
    for item in items[:2]:
        if item.tag != TAG_INT:
            raise NodeProblem(item, f"!int bounds must be integers, found {describe_node(item)}")
        bounds.append(int(scalar(item)))
    low, high = bounds
    if not low <= high:
        raise NodeProblem(node, f"!int needs low <= high, found [{low}, {high}]")
    step, log = 1, False
    if len(items) == 3:
        third = items[2]
        if third.tag == TAG_INT:
            step = int(scalar(third))
            if step < 1:
                raise NodeProblem(third, f"!int step must be at least 1, found {step}")
            if (high - low) % step:
                raise NodeProblem(node, f"!int [{low}, {high}, {step}]: high - low is not a multiple of the step")
        elif third.tag != TAG_NULL and third.value == "log":
            log = True
            if low < 1:
                raise NodeProblem(node, f"!int [low, high, log] needs low >= 1, found {low}")
        else:
            raise NodeProblem(third, f"the third value of !int is a step (an integer) or log, found {third.value!r}")
    return Dimension(name, INT, line, low=low, high=high, step=step, log=log)


def _conditional(name: str, node: MappingNode, line: int, source: str, seen: dict[str, int], depth: int) -> Dimension:
    choices: list[Any] = []
    branches: list[tuple[Any, tuple[Dimension, ...]]] = []
    for key, value in node.value:
        check_tag(key)
        if not isinstance(key, ScalarNode):
            raise NodeProblem(
                key, f"choices of a conditional parameter must be single values, found {describe_node(key)}"
            )
        choice = scalar(key)
        if _key(choice) in {_key(c) for c in choices}:
            raise NodeProblem(key, f"choice {format_value(choice)} given more than once")
        choices.append(choice)
        check_tag(value)
        if value.tag == TAG_NULL and isinstance(value, ScalarNode) and value.value in ("", "~", "null", "Null", "NULL"):
            branches.append((choice, ()))
            continue
        if not isinstance(value, MappingNode) or value.tag != TAG_MAP:
            raise NodeProblem(
                value,
                f"choice {format_value(choice)}: give the parameters it brings as a mapping, or {{}} for none "
                f"(found {describe_node(value)})",
            )
        branches.append((choice, _dimensions(value, source, seen, depth + 1)))
    if not choices:
        raise NodeProblem(node, "empty mapping; give at least one choice")
    return Dimension(name, CATEGORICAL, line, choices=tuple(choices), branches=tuple(branches))
