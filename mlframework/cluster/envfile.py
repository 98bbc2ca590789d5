"""The ``NAME="value"`` file format of ``config.sh`` and the secrets file: parsed as data, never run.

:func:`parse_config` reads the small, safe subset of shell syntax that
:func:`format_config` writes (plus comments, ``export`` and single quotes) and
refuses anything a shell would expand or run, so ``source FILE`` and
:func:`parse_config` always agree on the values. Every refusal is one
:class:`~mlframework.exceptions.ConfigError` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from mlframework.exceptions import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Characters that mean themselves in an unquoted shell word (no expansion, globbing, splitting).
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./,:@%+=^-")
_DQ_ESCAPES = '"\\$`'  # what a backslash escapes inside double quotes (bash keeps it before others)
_WHY = {
    "$": "$ expands in the shell; quote the value and write \\$",
    "`": "backticks run a command; quote the value and write \\`",
    ";": "';' separates commands; quote the value",
    "&": "'&' runs commands; quote the value",
    "|": "'|' pipes commands; quote the value",
    "(": "parentheses are shell syntax; quote the value",
    ")": "parentheses are shell syntax; quote the value",
    "<": "redirections are not allowed; quote the value",
    ">": "redirections are not allowed; quote the value",
    "~": "an unquoted ~ expands to a home directory; quote the value",
    "#": "'#' inside an unquoted value; quote the value",
    "\\": "backslash outside quotes; quote the value",
}


class _LineError(Exception):
    pass


def _parse_line(line: str) -> tuple[str, str] | None:
    """``[export ]NAME=value [# comment]`` -> (NAME, value); None for blank and comment lines."""
    n, i = len(line), 0
    while i < n and line[i] in " \t":
        i += 1
    if i == n or line[i] == "#":
        return None
    if line.startswith("export", i) and i + 6 < n and line[i + 6] in " \t":
        i += 6
        while i < n and line[i] in " \t":
            i += 1
    match = _NAME.match(line, i)
    if not match:
        raise _LineError("expected NAME=value (only assignments and comments are allowed)")
    name, i = match.group(), match.end()
    if i == n or line[i] != "=":
        raise _LineError(f"expected '=' right after {name} (no spaces around =, no other commands)")
    i += 1
    value: list[str] = []
    while i < n and line[i] not in " \t":
        c = line[i]
        if c == '"':
            i += 1
            while True:
                if i == n:
                    raise _LineError("unterminated double quote (a value must stay on one line)")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    if i + 1 == n:
                        raise _LineError("backslash at the end of the line (a value must stay on one line)")
                    if line[i + 1] in _DQ_ESCAPES:
                        value.append(line[i + 1])
                        i += 2
                        continue
                    value.append(c)
                elif c in "$`":
                    raise _LineError(_WHY[c].replace("quote the value and ", ""))
                else:
                    value.append(c)
                i += 1
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise _LineError("unterminated single quote (a value must stay on one line)")
            value.append(line[i + 1 : end])
            i = end + 1
        elif c in _BARE:
            value.append(c)
            i += 1
        else:
            raise _LineError(_WHY.get(c, f"character {c!r} must be quoted"))
    while i < n and line[i] in " \t":
        i += 1
    if i < n and line[i] != "#":
        raise _LineError(f"text after the value of {name} (a shell would run it as a command); quote the value")
    return name, "".join(value)


def parse_config(text: str, source: str = "config.sh") -> dict[str, str]:
    """``NAME=value`` lines -> dict, refusing anything a shell would expand or run.

    Accepted: blank lines, ``# comments``, ``[export ]NAME=value [# comment]``
    where value is any run of ``"double"`` (only ``\\" \\\\ \\$ \\``` unescaped,
    as in bash), ``'single'`` and plain characters. ConfigError names
    ``source`` and the line otherwise, or when a name is set twice.
    """
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            if "\0" in line:
                raise _LineError("NUL byte")
            if line.endswith("\r"):
                raise _LineError("carriage return: the file has Windows line endings; convert it with dos2unix")
            parsed = _parse_line(line)
        except _LineError as exc:
            raise ConfigError(f"{source}:{number}: {exc}") from None
        if parsed is None:
            continue
        name, value = parsed
        if name in values:
            raise ConfigError(f"{source}:{number}: {name} is already set on line {lines[name]}")
        values[name], lines[name] = value, number
    return values


def decode(data: bytes, source: str) -> dict[str, str]:
    """A file's bytes -> its values (see :func:`parse_config`); ConfigError when they are not UTF-8 text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, source)


def quote_value(value: str) -> str:
    """``"value"`` that bash and :func:`parse_config` both read back as ``value``.

    Line breaks and NUL have no safe one-line spelling and are refused.
    """
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(f"{value!r}: line breaks and NUL cannot be stored in a config file")
    escaped = "".join("\\" + c if c in _DQ_ESCAPES else c for c in value)
    return f'"{escaped}"'


def format_config(mapping: Mapping[str, str], header: Iterable[str] = ()) -> str:
    """``# header`` lines then one ``NAME="value"`` line per item, in order."""
    lines = [f"# {h}".rstrip() for h in header]
    for name, value in mapping.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not a valid setting name")
        lines.append(f"{name}={quote_value(value)}")
    return "\n".join(lines) + "\n"
