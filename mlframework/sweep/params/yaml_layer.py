"""The YAML layer under both parameter grammars (grid and search space): safe composing, tags, names, scalars, errors.

A parameters.yml is composed into nodes by :class:`yaml.SafeLoader` and never
constructed as a whole: each grammar (:mod:`mlframework.sweep.params.grid_file`,
:mod:`mlframework.sweep.params.space`) walks the nodes with the helpers here and
builds only what it understands. A problem found on a node is a
:class:`NodeProblem`; :func:`parameter_entries` and :func:`load_file` turn it into
the one-line :class:`~mlframework.exceptions.GridError`
``{source}:{line}: parameter '{name}': {problem}`` (:func:`~mlframework.sweep.params.grid.grid_error`).

The top-level key ``mlframework`` (:data:`RESERVED`) is the file's own section, never a parameter:
:func:`compose_root` leaves it out, and :mod:`mlframework.sweep.params.settings` reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlframework.sweep.params.grid import Scalar, grid_error

__all__ = [
    "NAME_PATTERN",
    "RESERVED",
    "SEARCH_TAGS",
    "TAG_BOOL",
    "TAG_FLOAT",
    "TAG_INT",
    "TAG_MAP",
    "TAG_NULL",
    "TAG_SEQ",
    "TAG_STR",
    "TAG_TIMESTAMP",
    "TAG_TUPLE",
    "NodeProblem",
    "check_tag",
    "compose_root",
    "construct_number",
    "describe_node",
    "is_reserved",
    "load_file",
    "parameter_entries",
    "parameter_name",
    "scalar",
    "short_tag",
]

T = TypeVar("T")

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # a parameter name: a valid option name
RESERVED = "mlframework"  # the top-level key of the file's own section (sweep/params/settings.py), not a parameter

_YAML = "tag:yaml.org,2002:"
TAG_STR, TAG_INT, TAG_FLOAT, TAG_BOOL, TAG_NULL = (_YAML + t for t in ("str", "int", "float", "bool", "null"))
TAG_TIMESTAMP, TAG_SEQ, TAG_MAP = _YAML + "timestamp", _YAML + "seq", _YAML + "map"
TAG_TUPLE = _YAML + "python/tuple"  # an interval in either grammar

# The tags a search space adds (uniform, loguniform, int): a grid only says they need --search.
SEARCH_TAGS = ("!uniform", "!loguniform", "!int")


class NodeProblem(Exception):
    """A problem with one node (``node`` None: with the file as a whole), before the parameter name is attached."""

    def __init__(self, node: Node | None, text: str) -> None:
        super().__init__(text)
        self.line = node.start_mark.line + 1 if node is not None and node.start_mark else 0
        self.text = text


def load_file(path: str | os.PathLike[str], parse: Callable[[bytes, str], T]) -> T:
    """Read a parameters.yml and build it with ``parse(data, source)``; ``source`` is ``path`` as given.

    ``parse`` says what is built: :func:`~mlframework.sweep.params.grid_file.parse_grid`
    or :func:`~mlframework.sweep.params.space.parse_space`.
    """
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise grid_error(source, 0, None, "file not found") from None
    except IsADirectoryError:
        raise grid_error(source, 0, None, "is a directory, not a parameters file") from None
    except OSError as exc:
        raise grid_error(source, 0, None, f"cannot read: {exc.strerror or exc}") from None
    return parse(data, source)


def compose_root(stream: str | bytes, source: str, *, keep_reserved: bool = False) -> MappingNode:
    """The file's top-level mapping node, composed safely (nodes only: nothing is constructed).

    The :data:`RESERVED` section is left out of it (it holds no parameters) unless ``keep_reserved``.
    """
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
        raise grid_error(source, mark.line + 1 if mark else 0, None, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise grid_error(source, 0, None, f"cannot read YAML: {exc}") from None
    except RecursionError:
        raise grid_error(source, 0, None, "YAML nested too deeply") from None
    if root is None:
        raise grid_error(source, 0, None, "empty file; expected a mapping of parameter names to values")
    try:
        check_tag(root)
        if isinstance(root, MappingNode) and root.tag != TAG_MAP:
            raise NodeProblem(root, f"unsupported tag {short_tag(root.tag)}; expected a plain mapping")
        if not isinstance(root, MappingNode):
            raise NodeProblem(root, f"expected a mapping of parameter names to values, found {describe_node(root)}")
    except NodeProblem as problem:
        raise grid_error(source, problem.line, None, problem.text) from None
    if not keep_reserved:
        root.value = [(key, value) for key, value in root.value if not is_reserved(key)]
    return root


def is_reserved(key: Node) -> bool:
    """Whether a top-level key is the file's own section (:data:`RESERVED`)."""
    return isinstance(key, ScalarNode) and key.tag == TAG_STR and key.value == RESERVED


def parameter_entries(
    node: MappingNode, source: str, build: Callable[[str, Node, int], T], seen: dict[str, int] | None = None
) -> Iterator[T]:
    """``build(name, value_node, line)`` for each parameter of a mapping, in file order.

    Names are checked (:func:`parameter_name`) and must be new to ``seen`` (name ->
    line, shared across nested mappings when given); a :class:`NodeProblem` from
    ``build`` becomes the one-line GridError naming the parameter.
    """
    seen = {} if seen is None else seen
    for key, value in node.value:
        line = key.start_mark.line + 1
        try:
            name = parameter_name(key)
        except NodeProblem as problem:
            raise grid_error(source, problem.line, None, problem.text) from None
        if name in seen:
            raise grid_error(source, line, name, f"given more than once (first on line {seen[name]})")
        seen[name] = line
        try:
            yield build(name, value, line)
        except NodeProblem as problem:
            raise grid_error(source, problem.line or line, name, problem.text) from None


def short_tag(tag: str) -> str:
    """A tag as written in YAML: ``!!python/name`` rather than ``tag:yaml.org,2002:python/name``."""
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


def describe_node(node: Node) -> str:
    """What a node is, for an error: ``a mapping``, ``a list`` or ``the value 'x'``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"the value {node.value!r}"


def check_tag(node: Node) -> None:
    """Reject python tags (but the tuple) wherever they appear: nothing is ever built from them."""
    if node.tag.startswith(_YAML + "python/") and node.tag != TAG_TUPLE:
        raise NodeProblem(node, f"unsafe tag {short_tag(node.tag)} is not allowed (parameters.yml is loaded safely)")


def parameter_name(key: Node) -> str:
    """A mapping key as a parameter name: a plain string that is a valid option name."""
    check_tag(key)
    if not isinstance(key, ScalarNode) or key.tag != TAG_STR:
        raise NodeProblem(key, f"parameter names must be strings, found {describe_node(key)}")
    if not NAME_PATTERN.fullmatch(key.value):
        raise NodeProblem(
            key,
            f"parameter name {key.value!r} is not a valid option name "
            "(letters, digits, _ . -, not starting with a digit, . or -)",
        )
    return str(key.value)


def scalar(node: Node) -> Scalar:
    """A plain scalar value: str (a timestamp stays the text written), int, float or bool; null is a problem."""
    if not isinstance(node, ScalarNode):
        raise NodeProblem(node, f"unsupported tag {short_tag(node.tag)}")
    tag, text = node.tag, str(node.value)
    if tag == TAG_NULL:
        raise NodeProblem(node, "has no value (null); give a value, or true/false for a flag")
    if tag in (TAG_STR, TAG_TIMESTAMP):  # a date stays the text written
        if "\0" in text:
            raise NodeProblem(node, "values must not contain NUL characters")
        return text
    if tag in (TAG_INT, TAG_FLOAT, TAG_BOOL):
        return construct_number(node)
    raise NodeProblem(node, f"unsupported tag {short_tag(tag)}")


def construct_number(node: ScalarNode) -> Scalar:
    """An int, float or bool scalar, through PyYAML's safe constructor for that one node."""
    method = {TAG_INT: "construct_yaml_int", TAG_FLOAT: "construct_yaml_float", TAG_BOOL: "construct_yaml_bool"}[
        node.tag
    ]
    try:
        value: Scalar = getattr(_CONSTRUCTOR, method)(node)
    except (ValueError, KeyError, TypeError, ArithmeticError):
        raise NodeProblem(node, f"{node.value!r} is not a valid {short_tag(node.tag)}") from None
    return value


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
