"""How a combination of parameters becomes a training script's command-line arguments.

The seed's style, the default, is one ``--name=value`` argument per parameter
(:func:`render_options`; :func:`format_value` writes the value). Scripts written otherwise
say so through :func:`~mlframework.sweep.trials.tasks.train_task`'s ``arguments``:

* ``separate=True``: ``--name value`` (two arguments);
* ``spread_lists=True``: a list value as several arguments, ``layers: [[64, 64]]``
  giving ``--layers 64 64`` (argparse ``nargs="+"``); without it a list value is
  one argument in JSON, ``--layers=[64, 64]``;
* ``negatable=True``: ``false`` as ``--no-name`` (argparse ``BooleanOptionalAction``)
  instead of leaving the flag out.

``true`` is always ``--name`` alone, ``null`` always leaves the option out.

For people, :func:`display` shows a command on one line whatever its values
hold, and :func:`json_safe` makes a combination strict JSON.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def format_value(value: Any) -> str:
    """A value as written in options and tables: ints by str, floats by repr, bools as true/false.

    A list value is JSON on one line (``[64, 64]``, ``["relu", "tanh"]``): one
    argument that ``json.loads`` reads back.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value)


def render_options(combo: Mapping[str, Any]) -> list[str]:
    """argv elements for one combination in the seed's style, in its order; each option is ONE element.

    ``True`` -> ``--name``; ``False`` (and ``None``) -> left out; anything else ->
    ``--name=value`` with :func:`format_value`. Never shell-quoted: join with
    :func:`display` for people.
    """
    options = []
    for name, value in combo.items():
        if value is True:
            options.append(f"--{name}")
        elif value is False or value is None:
            continue
        else:
            options.append(f"--{name}={format_value(value)}")
    return options


@dataclass(frozen=True)
class ArgumentStyle:
    """How one project's script takes its options."""

    separate: bool = False  # --name value, not --name=value
    spread_lists: bool = False  # a list value as one argument per item after --name
    negatable: bool = False  # false as --no-name

    def render(self, combo: Mapping[str, Any]) -> list[str]:
        """argv elements for one combination, in its order (never shell-quoted)."""
        if self == SEED_STYLE:
            return render_options(combo)
        argv: list[str] = []
        for name, value in combo.items():
            if value is True:
                argv.append(f"--{name}")
            elif value is False:
                if self.negatable:
                    argv.append(f"--no-{name}")
            elif value is None:
                continue
            elif isinstance(value, (list, tuple)) and self.spread_lists:
                argv += [f"--{name}", *(format_value(item) for item in value)]
            elif self.separate:
                argv += [f"--{name}", format_value(value)]
            else:
                argv.append(f"--{name}={format_value(value)}")
        return argv


SEED_STYLE = ArgumentStyle()
STYLE_ATTRIBUTE = "argument_style"  # set by train_task on its task function


def style_of(function: Any) -> ArgumentStyle:
    """The argument style of a task function: what ``train_task(arguments=...)`` gave it, else the seed's."""
    style = getattr(function, STYLE_ATTRIBUTE, SEED_STYLE)
    return style if isinstance(style, ArgumentStyle) else SEED_STYLE


def _quote(argument: str) -> str:
    """One argument for a shell, on one line: ANSI-C quoting (``$'a\\nb'``) when it holds control characters."""
    if not any(ord(char) < 32 or ord(char) == 127 for char in argument):
        return shlex.quote(argument)
    escaped = []
    for char in argument:
        if char in _C_ESCAPES:
            escaped.append(_C_ESCAPES[char])
        elif ord(char) < 32 or ord(char) == 127:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    return "$'" + "".join(escaped) + "'"


_C_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display(argv: Sequence[str]) -> str:
    """``argv`` as a shell command line that stays on one line (bash, zsh and ksh read ``$'...'``)."""
    return " ".join(_quote(argument) for argument in argv)


def json_safe(value: Any) -> Any:
    """``value`` with infinities and NaN as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
