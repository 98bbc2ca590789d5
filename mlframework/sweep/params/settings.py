"""The parameters file's own section, ``mlframework:``: the command a project with no tasks.py runs.

A project whose script is not driven from a ``tasks.py`` gives its command line and argument
style in the parameters file, under the reserved top-level key ``mlframework`` (never a
parameter: the grid and the search space leave it out)::

    mlframework:
      command: python train.py {args} --out_dir={trial_dir}/out   # a string (split like a shell), or a list
      arguments: hydra        # default, separate, booleans, hydra, lightning  [default: default]
      new_keys: [c]           # hydra: parameters new to the app's config, passed as +c=value
      cwd: project            # project (the project directory) or trial ({trial_dir})  [default: project]
      env: {WANDB_MODE: disabled}   # added to the command's environment (values may use placeholders)
    lr: [0.1, 0.01]
    model.depth: [2, 3]

The command's placeholders are those of :mod:`mlframework.sweep.params.command`. Each trial runs
it through the workers' built-in task (:mod:`mlframework.sweep.trials.file_task`), which every
worker has, with or without a tasks.py; the driver sends it in each task message
(:meth:`FileCommand.to_record`) and records it in ``sweep.json`` for ``--resume`` and ``reproduce``.

Every problem is one :class:`~mlframework.exceptions.GridError` line naming the file, the line and
the key: ``parameters.yml:3: mlframework.arguments: unknown argument style 'hyrda' (give one of ...)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlframework.exceptions import ConfigError, GridError
from mlframework.sweep.params.arguments import PRESETS, ArgumentStyle
from mlframework.sweep.params.command import CommandTemplate
from mlframework.sweep.params.grid import grid_error
from mlframework.sweep.params.yaml_layer import (
    RESERVED,
    TAG_BOOL,
    TAG_FLOAT,
    TAG_INT,
    TAG_MAP,
    TAG_SEQ,
    TAG_STR,
    compose_root,
    describe_node,
    is_reserved,
    load_file,
    short_tag,
)

__all__ = ["KEYS", "SECTION", "FileCommand", "load_command", "parse_command"]

SECTION = RESERVED

#: The keys of the section, and what each says.
KEYS: dict[str, str] = {
    "command": "the command line each trial runs, with placeholders ({args}, {trial_dir}, ...)",
    "arguments": f"how {{args}} passes the parameters: {', '.join(PRESETS)}",
    "new_keys": "with arguments: hydra, the parameters new to the app's config (+name=value)",
    "cwd": "where the command runs: project (the project directory) or trial ({trial_dir})",
    "env": "variables added to the command's environment",
}
CWDS = ("project", "trial")


class _Problem(Exception):
    """A problem with one key of the section (``key`` None: with the section as a whole)."""

    def __init__(self, key: str | None, text: str, line: int = 0) -> None:
        super().__init__(text)
        self.key, self.text, self.line = key, text, line


@dataclass(frozen=True)
class FileCommand:
    """What the section gives: a command template and how it passes the parameters.

    It has the ``command_template`` and ``argument_style`` a ``command_task`` function has, so
    ``--dry-run`` and ``params`` show its trials' command lines the same way.
    """

    template: CommandTemplate
    arguments: str = "default"  # a preset's name (sweep/params/arguments.py PRESETS)
    new_keys: tuple[str, ...] = ()  # hydra: passed as +name=value
    cwd: str = "project"  # or "trial"
    env: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # the parameters file it was read from (for messages)

    @property
    def command_template(self) -> CommandTemplate:
        """The command line with its placeholders."""
        return self.template

    @property
    def argument_style(self) -> ArgumentStyle:
        """How ``{args}`` renders a trial's parameters."""
        if self.arguments == "hydra":
            return ArgumentStyle.hydra(new=self.new_keys)
        return PRESETS[self.arguments]

    def to_record(self) -> dict[str, Any]:
        """The section as plain JSON: what a task message carries and ``sweep.json`` records."""
        record: dict[str, Any] = {"command": list(self.template.words), "arguments": self.arguments, "cwd": self.cwd}
        if self.new_keys:
            record["new_keys"] = list(self.new_keys)
        if self.env:
            record["env"] = dict(self.env)
        return record

    def to_yaml(self) -> str:
        """The section as one line of YAML (a JSON flow mapping), for a parameters file written here."""
        return f"{SECTION}: {json.dumps(self.to_record(), ensure_ascii=False)}\n"

    @classmethod
    def from_record(cls, record: Any, where: str) -> FileCommand:
        """The section again from :meth:`to_record`'s JSON, checked as the file's section is.

        ``where`` starts the one-line ConfigError (e.g. ``results/<id>/sweep.json``).
        """
        if not isinstance(record, Mapping):
            raise ConfigError(f"{where}: {SECTION}: expected a mapping, found {type(record).__name__}")
        try:
            return _build(dict(record), {}, where)
        except _Problem as problem:
            raise ConfigError(f"{where}: {_said(problem.key)}: {problem.text}") from None

    def check_names(self, names: list[str]) -> None:
        """Fail (one line) when ``new_keys`` names a parameter that the parameters file does not have."""
        unknown = [name for name in self.new_keys if name not in names]
        if unknown:
            raise GridError(
                f"{self.source}: {SECTION}.new_keys: {unknown[0]!r} is not a parameter of the file "
                f"(parameters: {', '.join(names) or 'none'})"
            )


def load_command(path: str | os.PathLike[str]) -> FileCommand | None:
    """The command a parameters file gives (None when it has no ``mlframework:`` section)."""
    return load_file(path, parse_command)


def parse_command(text: str | bytes, source: str = "<string>") -> FileCommand | None:
    """The command the text of a parameters file gives (None when it has no ``mlframework:`` section)."""
    root = compose_root(text, source, keep_reserved=True)
    for key, value in root.value:
        if is_reserved(key):
            return _from_node(value, source, key.start_mark.line + 1)
    return None


def _said(key: str | None) -> str:
    return f"{SECTION}.{key}" if key else SECTION


def _from_node(node: Node, source: str, line: int) -> FileCommand:
    try:
        if not isinstance(node, MappingNode) or node.tag != TAG_MAP or not node.value:
            found = "an empty section" if isinstance(node, MappingNode) else describe_node(node)
            raise _Problem(None, f"give a mapping with command: (keys: {', '.join(KEYS)}), found {found}", line)
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode) or key_node.tag != TAG_STR:
                raise _Problem(None, f"keys must be names, found {describe_node(key_node)}", key_line)
            key = str(key_node.value)
            if key in values:
                raise _Problem(key, f"given more than once (first on line {lines[key]})", key_line)
            lines[key] = key_line
            values[key] = _plain(value_node, key, key_line)
        return _build(values, lines, source)
    except _Problem as problem:
        raise grid_error(source, problem.line or line, None, f"{_said(problem.key)}: {problem.text}") from None


def _plain(node: Node, key: str, line: int) -> Any:
    """A value of the section as plain Python: a scalar's text (str) or value, a list, a mapping."""
    if isinstance(node, ScalarNode):
        if node.tag == TAG_STR:
            return str(node.value)
        if node.tag in (TAG_INT, TAG_FLOAT, TAG_BOOL):
            return str(node.value)  # as written: env: {SEED: 1} gives "1"
        raise _Problem(key, f"unsupported value {short_tag(node.tag)} {node.value!r}", line)
    if isinstance(node, SequenceNode) and node.tag == TAG_SEQ:
        return [_plain(item, key, line) for item in node.value]
    if isinstance(node, MappingNode) and node.tag == TAG_MAP:
        if not all(isinstance(k, ScalarNode) for k, _v in node.value):
            raise _Problem(key, "the keys of a mapping must be names", line)
        return {_plain(k, key, line): _plain(v, key, line) for k, v in node.value}
    raise _Problem(key, f"unsupported tag {short_tag(node.tag)}", line)


def _strings(value: Any, key: str, line: int, what: str) -> list[str]:
    """A string or a list of strings as a list (a problem naming ``key`` otherwise)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _Problem(key, f"give {what}, found {value!r}", line)
    return list(items)


def _build(values: dict[str, Any], lines: Mapping[str, int], source: str) -> FileCommand:
    """The FileCommand of a section's plain values; a :class:`_Problem` naming the key at fault."""
    for key in values:
        if key not in KEYS:
            raise _Problem(key, f"unknown key (keys: {', '.join(KEYS)})", lines.get(key, 0))
    if "command" not in values:
        raise _Problem(None, f"no command: give the command line each trial runs (keys: {', '.join(KEYS)})")
    command = values["command"]
    line = lines.get("command", 0)
    words = _strings(command, "command", line, "a command line, or a list of its words")
    try:
        template = CommandTemplate.parse(command if isinstance(command, str) else words, "x")
    except ConfigError as exc:
        raise _Problem("command", str(exc).removeprefix("x: "), line) from None
    arguments = values.get("arguments", "default")
    if arguments not in PRESETS:
        raise _Problem(
            "arguments",
            f"unknown argument style {arguments!r} (give one of {', '.join(PRESETS)})",
            lines.get("arguments", 0),
        )
    new_keys = _strings(values.get("new_keys", []), "new_keys", lines.get("new_keys", 0), "a list of parameter names")
    if new_keys and arguments != "hydra":
        raise _Problem(
            "new_keys",
            "only Hydra overrides mark new keys (+name=value): add arguments: hydra",
            lines.get("new_keys", 0),
        )
    cwd = values.get("cwd", "project")
    if cwd not in CWDS:
        raise _Problem("cwd", f"give project or trial, found {cwd!r}", lines.get("cwd", 0))
    env = values.get("env", {})
    env_line = lines.get("env", 0)
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise _Problem("env", f"give a mapping of variable names to values, found {env!r}", env_line)
    for name, value in env.items():
        try:
            CommandTemplate.parse([value], "x")
        except ConfigError as exc:
            raise _Problem("env", f"{name}: {str(exc).removeprefix('x: ')}", env_line) from None
    return FileCommand(template, arguments, tuple(new_keys), cwd, dict(env), source)
