"""A task's command line with placeholders, and parameter values that use the same placeholders.

A command template is a command line, split like a shell would (:mod:`shlex`, no shell runs it),
whose words may hold placeholders filled for each trial::

    python train.py config/train_shakespeare_char.py {args} --out_dir={trial_dir}/out

``{args}`` (a word of its own) becomes the parameters rendered in the task's argument style,
one argv element each; the others are in :data:`PLACEHOLDERS`. A parameter's string value may
use them too (``out_dir: "{trial_dir}/out"`` in parameters.yml). ``{{name}}`` is a literal
``{name}``; ``${...}`` (a Hydra/OmegaConf interpolation) and braces around anything but a name
are left as they are. An unknown placeholder is an error naming it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlframework.exceptions import ConfigError
from mlframework.sweep.params.arguments import ArgumentStyle, display, style_of

ARGS = "args"

#: Every placeholder, and what it becomes.
PLACEHOLDERS: dict[str, str] = {
    ARGS: "the parameters as arguments, in the task's argument style (a word of its own)",
    "trial_dir": "the trial's own directory (SWEEP_DIR/work/<trial> in embedded mode)",
    "trial": "the trial's id, e.g. t0003",
    "sweep": "the sweep's id",
    "gpu": "the GPU(s) the trial's worker is pinned to (empty on a CPU worker)",
    "project_dir": "the project directory (where tasks.py is)",
    "python": "the worker's Python interpreter",
}

#: A command's first word that means the worker's own interpreter, as ``{python}`` does.
BARE_PYTHON = ("python", "python3")

_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|(?<![$\{])\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders_in(text: str) -> list[str]:
    """The placeholder names ``text`` uses, in order (``{{name}}`` and ``${name}`` are none)."""
    return [match.group(2) for match in _PLACEHOLDER.finditer(text) if match.group(2)]


def known() -> str:
    """The placeholders, for an error message: ``{args}, {trial_dir}, ...``."""
    return ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)


def fill(text: str, places: Mapping[str, str]) -> str:
    """``text`` with its placeholders filled from ``places``; one not in ``places`` stays as written.

    (At ``--dry-run`` the trial's directory is not known yet: it is shown as ``{trial_dir}``.)
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "{" + match.group(1) + "}"
        name = match.group(2)
        return places[name] if name in places else match.group(0)

    return _PLACEHOLDER.sub(replace, text) if "{" in text else text


def fill_value(value: Any, places: Mapping[str, str]) -> Any:
    """A parameter's value with the placeholders in its strings (in lists too) filled."""
    if isinstance(value, str):
        return fill(value, places)
    if isinstance(value, list):
        return [fill_value(item, places) for item in value]
    if isinstance(value, tuple):
        return tuple(fill_value(item, places) for item in value)
    return value


def fill_params(params: Mapping[str, Any], places: Mapping[str, str]) -> dict[str, Any]:
    """A combination with its values' placeholders filled (the recorded combination keeps them)."""
    return {name: fill_value(value, places) for name, value in params.items()}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def value_problems(values: Mapping[str, Iterable[Any]], source: str) -> list[str]:
    """One line per parameter whose values use a placeholder that does not exist (or ``{args}``)."""
    problems = []
    for name, choices in values.items():
        for choice in choices:
            bad = [p for text in _strings(choice) for p in placeholders_in(text) if p not in PLACEHOLDERS or p == ARGS]
            if bad:
                what = "{args} belongs in the command, not in a value" if bad[0] == ARGS else "unknown placeholder"
                problems.append(
                    f"{source}: parameter '{name}': {what} {{{bad[0]}}} in {choice!r} "
                    f"(placeholders: {known().replace('{args}, ', '')})"
                )
                break
    return problems


def check_values(values: Mapping[str, Iterable[Any]], source: str) -> None:
    """Raise ConfigError (one line) for the first parameter value using an unknown placeholder."""
    problems = value_problems(values, source)
    if problems:
        raise ConfigError(problems[0])


def parameter_values(grid: Any) -> dict[str, list[Any]]:
    """Each parameter's listed values, of a grid or a search space (ranges and intervals hold numbers: none)."""
    if hasattr(grid, "walk"):  # a search space (sweep/params/space.py)
        return {dimension.name: list(dimension.choices) for _depth, dimension in grid.walk()}
    return {p.name: list(p.values) if isinstance(p.values, tuple) else [] for p in grid.parameters}


@dataclass(frozen=True)
class CommandTemplate:
    """A command line whose words hold placeholders (see the module's docstring)."""

    words: tuple[str, ...]

    @classmethod
    def parse(cls, command: str | Sequence[str], where: str) -> CommandTemplate:
        """Split ``command`` (a string, with shlex; or argv words) and check its placeholders.

        ``where`` starts the one-line ConfigError for an empty command, an unknown
        placeholder, or ``{args}`` that is not a word of its own.
        """
        try:
            words = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(f"{where}: {exc} in {command!r}") from None
        if not words:
            raise ConfigError(f"{where}: the command is empty")
        for word in words:
            for name in placeholders_in(word):
                if name not in PLACEHOLDERS:
                    raise ConfigError(f"{where}: unknown placeholder {{{name}}} in {word!r} (placeholders: {known()})")
                if name == ARGS and word != "{args}":
                    raise ConfigError(
                        f"{where}: {{args}} must be a word of its own (it becomes several arguments), not {word!r}"
                    )
        return cls(tuple(words))

    @property
    def takes_args(self) -> bool:
        """Whether the parameters are passed (``{args}`` is in the command)."""
        return "{args}" in self.words

    def render(self, arguments: Sequence[str], places: Mapping[str, str]) -> list[str]:
        """The argv of one trial: ``{args}`` replaced by ``arguments``, other placeholders from ``places``."""
        argv: list[str] = []
        for word in self.words:
            if word == "{args}":
                argv += arguments
            else:
                argv.append(fill(word, places))
        if argv[0] in BARE_PYTHON and "python" in places:
            # What a user means by `python train.py`: the Python the workers run (the one with the project's
            # packages), not whichever one PATH finds first; a path (/usr/bin/python3) names another one.
            argv[0] = places["python"]
        return argv


TEMPLATE_ATTRIBUTE = "command_template"  # set by command_task on its task function


def template_of(function: Any) -> CommandTemplate | None:
    """The command template of a task function (``command_task``), or None."""
    template = getattr(function, TEMPLATE_ATTRIBUTE, None)
    return template if isinstance(template, CommandTemplate) else None


def command_line(function: Any, params: Mapping[str, Any], places: Mapping[str, str]) -> str:
    """What a trial of the task ``function`` runs, on one line for people.

    A command task's whole command line, with the placeholders not in ``places``
    (known only when the trial runs) shown as ``{trial_dir}``; any other task's options.
    """
    style: ArgumentStyle = style_of(function)
    arguments = style.render(fill_params(params, places))
    template = template_of(function)
    return display(template.render(arguments, places) if template is not None else arguments)
