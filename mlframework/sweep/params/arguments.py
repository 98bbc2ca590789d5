"""How a combination of parameters becomes a training script's command-line arguments.

The seed's style, the default, is one ``--name=value`` argument per parameter
(:func:`render_options`; :func:`format_value` writes the value). Scripts written otherwise
say so through :func:`~mlframework.sweep.trials.tasks.train_task`'s ``arguments``, by a
preset's name or an :class:`ArgumentStyle`:

* ``"default"``: ``--name=value``; ``true`` as ``--name`` alone, ``false`` leaves the option out;
* ``"separate"``: ``--name value`` (two arguments);
* ``"booleans"``: ``--name=True`` / ``--name=False`` (what W&B passes; fits scripts that read
  options with ``literal_eval`` or argparse ``type=str2bool``);
* ``"hydra"``: Hydra overrides ``name=value`` (no dashes; dotted names; ``true``/``false``/``null``;
  lists as ``[1,2,3]``; a string quoted only where Hydra's override grammar would read it
  otherwise); ``ArgumentStyle.hydra(new=["name"])`` passes keys new to the config as ``+name=value``;
* ``"lightning"``: Lightning CLI options ``--trainer.max_epochs=3``, booleans as ``true``/``false``.

Fields of :class:`ArgumentStyle` for the dashed styles: ``separate=True`` (``--name value``),
``spread_lists=True`` (a list value as several arguments, ``layers: [[64, 64]]`` giving
``--layers 64 64``, argparse ``nargs="+"``; without it a list value is one argument in JSON,
``--layers=[64, 64]``), ``negatable=True`` (``false`` as ``--no-name``, argparse
``BooleanOptionalAction``), ``bool_words=("True", "False")`` (a boolean as a value).

``null`` leaves the option out in the dashed styles (``name=null`` in Hydra's). A ``false``
that leaves an option out is said once per sweep (:func:`false_warning`).

For people, :func:`display` shows a command on one line whatever its values
hold, and :func:`json_safe` makes a combination strict JSON.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
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


HYDRA, OPTIONS = "hydra", "options"


@dataclass(frozen=True)
class ArgumentStyle:
    """How one project's script takes its options (presets: :meth:`booleans`, :meth:`hydra`, :meth:`lightning`)."""

    separate: bool = False  # --name value, not --name=value
    spread_lists: bool = False  # a list value as one argument per item after --name
    negatable: bool = False  # false as --no-name
    bool_words: tuple[str, str] | None = None  # a boolean as a value: ("True", "False") gives --name=False
    syntax: str = OPTIONS  # "options": --name=value; "hydra": name=value overrides
    new: tuple[str, ...] = ()  # hydra: names new to the app's config, passed as +name=value

    def __post_init__(self) -> None:
        if self.syntax not in (OPTIONS, HYDRA):
            raise ValueError(f"ArgumentStyle(syntax={self.syntax!r}): give {OPTIONS!r} or {HYDRA!r}")
        if self.syntax == HYDRA and (self.separate or self.spread_lists or self.negatable or self.bool_words):
            raise ValueError("ArgumentStyle: a Hydra style takes no separate, spread_lists, negatable or bool_words")
        if self.new and self.syntax != HYDRA:
            raise ValueError("ArgumentStyle(new=...): only Hydra overrides mark new keys (+name=value)")
        if self.bool_words is not None:
            object.__setattr__(self, "bool_words", tuple(self.bool_words))
            if len(self.bool_words) != 2 or not all(isinstance(w, str) for w in self.bool_words):
                raise ValueError("ArgumentStyle(bool_words=...): give two strings, for true and for false")
        object.__setattr__(self, "new", (self.new,) if isinstance(self.new, str) else tuple(self.new))

    @classmethod
    def booleans(cls, true: str = "True", false: str = "False") -> ArgumentStyle:
        """``--name=value``, a boolean as ``--name=True`` / ``--name=False`` (W&B's way; ``literal_eval`` reads it)."""
        return cls(bool_words=(true, false))

    @classmethod
    def hydra(cls, new: Iterable[str] = ()) -> ArgumentStyle:
        """Hydra overrides ``name=value``; the names in ``new`` (keys not in the app's config) as ``+name=value``."""
        return cls(syntax=HYDRA, new=tuple(new))

    @classmethod
    def lightning(cls) -> ArgumentStyle:
        """Lightning CLI (jsonargparse) options: ``--trainer.max_epochs=3``, booleans as ``true``/``false``."""
        return cls(bool_words=("true", "false"))

    @property
    def drops_false(self) -> bool:
        """Whether a ``false`` value leaves its option out (the seed's rule): the script keeps its own default."""
        return self.syntax == OPTIONS and self.bool_words is None and not self.negatable

    def render(self, combo: Mapping[str, Any]) -> list[str]:
        """argv elements for one combination, in its order (never shell-quoted)."""
        if self == SEED_STYLE:
            return render_options(combo)
        if self.syntax == HYDRA:
            return [f"{'+' if name in self.new else ''}{name}={hydra_value(value)}" for name, value in combo.items()]
        argv: list[str] = []
        for name, value in combo.items():
            if isinstance(value, bool) and self.bool_words is not None:
                word = self.bool_words[0] if value else self.bool_words[1]
                argv += [f"--{name}", word] if self.separate else [f"--{name}={word}"]
            elif value is True:
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

#: The styles a task can name: ``train_task(..., arguments="hydra")``.
PRESETS: dict[str, ArgumentStyle] = {
    "default": SEED_STYLE,
    "separate": ArgumentStyle(separate=True),
    "booleans": ArgumentStyle.booleans(),
    "hydra": ArgumentStyle.hydra(),
    "lightning": ArgumentStyle.lightning(),
}


def named_style(style: ArgumentStyle | str) -> ArgumentStyle:
    """``style`` itself, or the preset it names (ValueError naming the presets for any other name)."""
    if isinstance(style, ArgumentStyle):
        return style
    preset = PRESETS.get(style) if isinstance(style, str) else None
    if preset is None:
        raise ValueError(f"unknown argument style {style!r} (give one of {', '.join(PRESETS)} or an ArgumentStyle)")
    return preset


def style_of(function: Any) -> ArgumentStyle:
    """The argument style of a task function: what ``train_task(arguments=...)`` gave it, else the seed's."""
    style = getattr(function, STYLE_ATTRIBUTE, SEED_STYLE)
    return style if isinstance(style, ArgumentStyle) else SEED_STYLE


# -- Hydra's override grammar (hydra/grammar/OverrideLexer.g4 in hydra-core 1.1+) ----------------------------

# Characters a value may hold unquoted and be read back as written: letters, digits and Hydra's
# UNQUOTED_CHAR set less the backslash (it escapes), plus ':' (allowed in a primitive).
_HYDRA_PLAIN = re.compile(r"[A-Za-z0-9_\-/+.$%*@?|:]+")
_INT = r"(?:0|[1-9](?:_?[0-9])*)"
_POINT_FLOAT = rf"(?:{_INT}\.|{_INT}?\.[0-9](?:_?[0-9])*)"
# An unquoted value Hydra reads as a number, boolean or null (a string that looks so is quoted).
_HYDRA_TYPED = re.compile(
    rf"[+-]?(?:{_INT}|{_POINT_FLOAT}|(?:{_INT}|{_POINT_FLOAT})[eE][+-]?[0-9](?:_?[0-9])*|inf|nan)|true|false|null",
    re.IGNORECASE,
)


def hydra_value(value: Any) -> str:
    """``value`` as Hydra's override grammar reads it back: a string quoted only when it has to be."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_hydra_key(str(k))}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _HYDRA_PLAIN.fullmatch(text) and not _HYDRA_TYPED.fullmatch(text):
        return text
    return _hydra_quoted(text)


def _hydra_quoted(text: str) -> str:
    """``text`` in quotes: a quote inside, and backslashes before it or at the end, escaped with ``\\``."""
    quote = '"' if "'" in text and '"' not in text else "'"
    escaped = re.sub(
        r"(\\*)(" + quote + r"|\Z)",
        lambda m: m.group(1) * 2 + ("\\" + quote if m.group(2) else ""),
        text,
    )
    return quote + escaped + quote


def _hydra_key(key: str) -> str:
    """A dict key (never quoted in the grammar): its special characters escaped."""
    return re.sub(r"([\\()\[\]{}:=, \t])", r"\\\1", key)


def false_parameters(values: Mapping[str, Iterable[Any]]) -> list[str]:
    """The parameters (of ``name -> values``) that take the value ``false`` somewhere."""
    return [name for name, choices in values.items() if any(choice is False for choice in choices)]


def false_warning(style: ArgumentStyle, values: Mapping[str, Iterable[Any]], in_file: bool = False) -> str | None:
    """One line for parameters whose ``false`` leaves their option out in ``style`` (None when none does).

    The script then keeps its own default, which may well be true: say so once, and how to pass it
    (``in_file``: the style is the parameters file's ``mlframework:`` section, not a task of tasks.py).
    """
    if not style.drops_false:
        return None
    names = false_parameters(values)
    if not names:
        return None
    options = ", ".join(f"--{name}" for name in names)
    first = names[0]
    said = "parameter" if len(names) == 1 else "parameters"
    how = (
        f"add arguments: booleans to the parameters file's mlframework: section (--{first}=False)"
        if in_file
        else f'use arguments="booleans" (--{first}=False) or ArgumentStyle(negatable=True) (--no-{first})'
    )
    return (
        f"{said} {', '.join(repr(n) for n in names)}: false leaves {options} out (the default argument style), "
        f"so the script keeps its own default; to pass false, {how}"
    )


def _quote(argument: str) -> str:
    """One argument for a shell, on one line: ANSI-C quoting (``$'a\\nb'``) when it holds control characters."""
    if not any(ord(char) < 32 or ord(char) == 127 for char in argument):
        rest = _SHOWN_PLACEHOLDER.sub("", argument) if "{" in argument else None
        if rest is not None and rest != argument and (not rest or shlex.quote(rest) == rest):
            return argument  # `--out={trial_dir}/out` as written: a shell reads `{name}` as itself
        if "'" in argument and not any(char in argument for char in '"$`\\!'):
            return f'"{argument}"'  # name='two words' (Hydra) reads better so than with '"'"'
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


_SHOWN_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")  # one not filled yet
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
