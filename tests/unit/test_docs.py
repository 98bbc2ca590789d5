"""The documentation stays true: links lead somewhere, commands shown are commands the CLI accepts.

Pages: README.md, docs/*.md, bench/README.md, infra/README.md. Checked, with every problem reported at once
as ``file:line: what``:

- every relative link (``[text](path)``, ``![alt](path)``) points to an existing file, and a ``#anchor`` to a
  heading of the target page (GitHub's slugs);
- every ``mlframework SUBCOMMAND ...`` shown (also ``.venv/bin/mlframework`` and ``python -m mlframework``) in a
  code block or inline code names a real subcommand and only options that subcommand accepts, read from the
  click group itself; so do the scripts that run one (``scripts/infrainit.sh -a ...`` is ``infrainit``'s
  options, ``./infra_clean.sh`` is ``infra-clean``'s);
- every ``scripts/*.sh`` (and ``bench/``, ``nvdocker_install/`` script) shown exists;
- docs/architecture.md's tree names every module of the package, and only modules that exist.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from mlframework.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "bench" / "README.md", ROOT / "infra" / "README.md", *(ROOT / "docs").glob("*.md")]
)

HELP_OPTIONS = {"-h", "--help"}
# Fenced blocks in these languages hold code, not commands a user types (`import mlframework as mlf`).
NOT_SHELL = {"python", "py", "yaml", "yml", "json", "toml", "ini", "dockerfile"}
# The generated ./infra_clean.sh runs `mlframework infra-clean` with --cluster and --hosts filled in.
GENERATED_SCRIPTS = {"./infra_clean.sh": "infra-clean", "infra_clean.sh": "infra-clean"}

_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)([^`]+?)\1")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# A command at the start of a line or span, or after a shell separator: [path/]mlframework or python -m mlframework.
_COMMAND = re.compile(
    r"(?:^|(?<=&&)|(?<=;)|(?<=\$\())\s*(?:\$\s+)?(?:[\w.$/{}-]*/)?(?:python3?\s+-m\s+)?mlframework(?=\s|$)(.*)"
)
_SCRIPT = re.compile(r"(?<![\w/.-])((?:\./)?(?:scripts|bench|nvdocker_install)/[\w./-]*\.sh|\./infra_clean\.sh)\b(.*)")
_OPTION = re.compile(r"^--?[A-Za-z][\w-]*")


@dataclass(frozen=True)
class Snippet:
    """Text shown as code: a fenced block's logical line, or an inline code span."""

    page: Path
    line: int
    text: str


def _where(page: Path, line: int) -> str:
    return f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name}:{line}"


# -- reading a page -------------------------------------------------------------------------------------------


def _prose_and_code(page: Path) -> tuple[list[tuple[int, str]], list[Snippet]]:
    """(prose lines with their numbers, code snippets): fenced and indented blocks, and inline code spans.

    Code lines that end in a backslash are joined with the next, and the indented continuation lines of a usage
    synopsis (`    [--dry-run] ...`) with the line they continue, so that a command is one snippet.
    """
    prose: list[tuple[int, str]] = []
    code: list[Snippet] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    fence: str | None = None
    shell = True
    pending: Snippet | None = None
    previous_blank = True
    in_list = False

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            code.append(pending)
            pending = None

    for number, line in enumerate(lines, start=1):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence, shell = opened.group(1)[:3], opened.group(2).lower() not in NOT_SHELL
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
                flush()
                continue
            if not shell:
                continue
            if pending is not None and (pending.text.endswith("\\") or line.lstrip().startswith("[")):
                pending = Snippet(page, pending.line, pending.text.rstrip("\\").rstrip() + " " + line.strip())
                continue
            flush()
            pending = Snippet(page, number, line)
            continue
        # An indented code block (CommonMark): four spaces after a blank line, outside a list.
        if line.startswith("    ") and (previous_blank or pending is not None) and not in_list and line.strip():
            if pending is not None and pending.text.endswith("\\"):
                pending = Snippet(page, pending.line, pending.text.rstrip("\\").rstrip() + " " + line.strip())
            else:
                flush()
                pending = Snippet(page, number, line.strip())
            continue
        flush()
        stripped = line.strip()
        if re.match(r"^([-*+]|\d+\.)\s", stripped):
            in_list = True
        elif not stripped:
            pass
        elif not line.startswith(" "):
            in_list = False
        previous_blank = not stripped
        prose.append((number, line))
    flush()
    code += _inline_code(page, prose)
    return prose, code


def _inline_code(page: Path, prose: list[tuple[int, str]]) -> Iterator[Snippet]:
    """Inline code spans of the prose, paragraph by paragraph: a span may go on over a line break."""
    paragraph: list[tuple[int, str]] = []
    for number, line in [*prose, (0, "")]:
        if line.strip() and (not paragraph or paragraph[-1][0] == number - 1):
            paragraph.append((number, line))
            continue
        text = "\n".join(part for _, part in paragraph)
        starts = [first for first, _ in paragraph]
        for match in _INLINE_CODE.finditer(text):
            line_number = starts[text.count("\n", 0, match.start())]
            yield Snippet(page, line_number, " ".join(match.group(2).split()))
        paragraph = [(number, line)] if line.strip() else []


def _without_inline_code(line: str) -> str:
    return _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "")
    text = unicodedata.normalize("NFC", text).lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, duplicates numbered as GitHub numbers them (``name``, ``name-1``)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fence: str | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[:3]
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        heading = _HEADING.match(line)
        if not heading:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


# -- checks ---------------------------------------------------------------------------------------------------


def link_problems(page: Path) -> Iterator[str]:
    """Relative links of ``page`` that lead nowhere: a missing file, or a missing heading for ``#anchor``."""
    prose, _ = _prose_and_code(page)
    for number, line in prose:
        for match in _LINK.finditer(_without_inline_code(line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page
            if not destination.exists():
                yield f"{_where(page, number)}: link to {target!r}: no file {path_part!r}"
                continue
            if anchor:
                if destination.suffix != ".md" or destination.is_dir():
                    yield f"{_where(page, number)}: link to {target!r}: an anchor into a file that is not a page"
                elif anchor not in anchors(destination):
                    yield f"{_where(page, number)}: link to {target!r}: no heading #{anchor} in {path_part or 'this page'}"


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False)
    except ValueError:  # an unbalanced quote in a synopsis
        return text.split()


def _accepted(command: click.Command) -> set[str]:
    names = set(HELP_OPTIONS)
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def _option_problems(where: str, shown: str, name: str, words: list[str]) -> Iterator[str]:
    """Options in ``words`` (what follows the subcommand ``name``) that it does not accept."""
    command = cli.commands.get(name)
    if command is None:
        yield f"{where}: `{shown}`: no subcommand {name!r} (known: {', '.join(sorted(cli.commands))})"
        return
    passthrough = bool(command.context_settings.get("ignore_unknown_options"))
    accepted = _accepted(command)
    positionals = 0
    for index, word in enumerate(words):
        if word.startswith("#") or word in {";", "&&", "||", ">", ">>", "2>&1", ")"}:
            return
        if word == "|":
            following = words[index + 1] if index + 1 < len(words) else ""
            if following.lstrip("[(").startswith("-"):
                continue  # an alternative in a synopsis: [--local ... | --broker URL]
            if following in cli.commands:  # `mlframework follow ID | fetch ID [--results DIR]`
                yield from _option_problems(where, shown, following, words[index + 2 :])
            return  # a pipe into another program
        bare = word.lstrip("[(").rstrip("]),")
        if not bare.startswith("-") or bare in {"-", "--"}:
            positionals += 1
            continue
        if passthrough and positionals:
            return  # run-task NAME ARGS...: what follows NAME is the module's
        option = _OPTION.match(bare)
        if option and option.group(0) not in accepted:
            yield f"{where}: `{shown}`: `mlframework {name}` has no option {option.group(0)}"


def command_problems(snippet: Snippet) -> Iterator[str]:
    """A shown ``mlframework ...`` or script command that names an unknown subcommand or option, or no script."""
    where = _where(snippet.page, snippet.line)
    text = snippet.text.strip()
    for match in _COMMAND.finditer(text):
        words = _tokens(match.group(1))
        group_options = {o for p in cli.params if isinstance(p, click.Option) for o in p.opts} | HELP_OPTIONS
        while words and words[0].startswith("-"):
            option = _OPTION.match(words[0])
            if option and option.group(0) not in group_options:
                yield f"{where}: `{text}`: `mlframework` has no option {option.group(0)}"
            if words[0] in HELP_OPTIONS | {"--version"}:
                words = []
            words = words[1:]
        if not words:
            continue
        name = words[0]
        if name == "..." or re.fullmatch(r"[A-Z][A-Z_]*", name) or name.startswith(("[", "|")):
            continue  # a placeholder: `mlframework COMMAND --help`, `python -m mlframework ...`
        yield from _option_problems(where, text, name, words[1:])
    for match in _SCRIPT.finditer(text):
        script = match.group(1)
        if script in GENERATED_SCRIPTS:
            name: str | None = GENERATED_SCRIPTS[script]
        else:
            path = ROOT / script.removeprefix("./")
            if not path.is_file():
                yield f"{where}: `{text}`: no script {script}"
                continue
            name = _subcommand_of(path)
        if name is None:
            continue
        words = _tokens(match.group(2))
        if name == "sweep" and words and not words[0].startswith("-"):
            words = words[1:]  # scripts/run_local.sh [PROJECT] [sweep options]
        yield from (
            problem.replace(f"`mlframework {name}` has", f"{script} (`mlframework {name}`) has")
            for problem in _option_problems(where, text, name, ["PROJECT", *words] if name == "sweep" else words)
        )


def _subcommand_of(script: Path) -> str | None:
    """The ``mlframework`` subcommand a script of ours execs with its arguments, if it is one of those."""
    if script.suffix != ".sh":
        return None
    for line in script.read_text(encoding="utf-8").splitlines():
        found = re.search(r"""exec .*mlframework"?\s+([a-z][a-z-]*)\b.*"\$@"$""", line.strip())
        if found:
            return found.group(1)
    return None


def architecture_problems() -> Iterator[str]:
    """Modules missing from docs/architecture.md's tree, and modules it names that do not exist."""
    page = ROOT / "docs" / "architecture.md"
    lines = page.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "## The tree")
    listed: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    in_block = False
    for number, line in enumerate(lines[start:], start=start + 1):
        if line.startswith("```"):
            if in_block:
                break
            in_block = True
            continue
        if not in_block or not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        first = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if first.endswith("/"):
            stack.append((indent, first.rstrip("/")))
        elif first.endswith(".py"):
            listed["/".join([*(name for _, name in stack), first])] = number
    actual = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "mlframework").rglob("*.py")
        if path.name != "__init__.py" or path.parent == ROOT / "mlframework"
    }
    for module in sorted(actual - set(listed)):
        yield f"docs/architecture.md: the tree does not name {module} (add a line for it under its folder)"
    for module in sorted(set(listed) - actual):
        yield f"docs/architecture.md:{listed[module]}: the tree names {module}, which does not exist"


def all_problems(pages: list[Path]) -> list[str]:
    problems: list[str] = []
    for page in pages:
        problems += link_problems(page)
        for snippet in _prose_and_code(page)[1]:
            problems += command_problems(snippet)
    return problems


def _by_place(problem: str) -> tuple[str, int]:
    file, line, _ = [*problem.split(":", 2), "", ""][:3]
    return file, int(line) if line.isdigit() else 0


# -- the tests ------------------------------------------------------------------------------------------------


def test_pages_exist_and_readme_links_every_doc_page():
    assert all(page.is_file() for page in PAGES)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [page.name for page in (ROOT / "docs").glob("*.md") if f"(docs/{page.name})" not in readme]
    assert not unlinked, f"README.md links no docs page {unlinked}"


def test_links_and_commands_shown_in_the_docs_are_valid():
    problems = sorted(all_problems(PAGES), key=_by_place)
    assert not problems, "the docs are out of date:\n" + "\n".join(problems)


def test_architecture_page_names_every_module():
    problems = list(architecture_problems())
    assert not problems, "\n".join(problems)


def test_every_command_is_documented_in_commands_md():
    page = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    missing = [name for name in cli.commands if f"mlframework {name}" not in page]
    assert not missing, f"docs/commands.md does not show {missing}"
    for name, command in cli.commands.items():
        undocumented = sorted(
            opt for opt in _accepted(command) - HELP_OPTIONS if not re.search(rf"`{re.escape(opt)}[\s`=\]|,]", page)
        )
        assert not undocumented, f"docs/commands.md does not mention {name}'s {undocumented}"


# -- the checker itself catches what it should -----------------------------------------------------------------


@pytest.fixture
def page(tmp_path: Path):
    """Writes a scratch page beside a small ``commands.md`` of one heading; returns its path."""
    (tmp_path / "commands.md").write_text("# Commands\n\n## `mlframework ls`\n", encoding="utf-8")

    def make(text: str) -> Path:
        path = tmp_path / "scratch.md"
        path.write_text(text, encoding="utf-8")
        return path

    return make


def test_a_broken_link_and_a_missing_heading_are_reported_with_file_and_line(page):
    path = page("# Title\n\nSee [cluster](commands.md#no-such-heading) and [gone](nothing-here.md).\n")
    problems = list(link_problems(path))
    name = path.name
    assert any(p.startswith(f"{name}:3:") and "no heading #no-such-heading" in p for p in problems), problems
    assert any(p.startswith(f"{name}:3:") and "no file 'nothing-here.md'" in p for p in problems), problems


def test_an_invented_option_an_unknown_subcommand_and_a_missing_script_are_reported(page):
    path = page(
        "# T\n\n```\nmlframework sweep projects/mnist --local --no-such-option\n"
        ".venv/bin/mlframework frobnicate\nscripts/no_such_script.sh\n"
        "scripts/infrainit.sh -a h1 --made-up\n```\n\nAnd `python -m mlframework ls --jsn` inline.\n"
    )
    problems = all_problems([path])
    text = "\n".join(problems)
    name = path.name
    assert f"{name}:4:" in text and "has no option --no-such-option" in text
    assert f"{name}:5:" in text and "no subcommand 'frobnicate'" in text
    assert f"{name}:6:" in text and "no script scripts/no_such_script.sh" in text
    assert f"{name}:7:" in text and "--made-up" in text
    assert f"{name}:10:" in text and "has no option --jsn" in text
    assert len(problems) == 5, text


def test_valid_forms_pass(page):
    path = page(
        "# T\n\n## A `--flag`: here\n\n[ok](#a---flag-here) [cmd](commands.md#mlframework-ls)\n\n"
        "```\nmlframework sweep PROJECT_DIR [-p FILE] [--local [--workers N] | --broker URL] \\\n"
        "    --search tpe --trials 3 --metric accuracy\n"
        "mlframework follow SWEEP_ID | fetch SWEEP_ID [--results DIR]   # comment --not-an-option\n"
        "mlframework ls --json | jq .\nscripts/run_tasks.sh run_training --resume X\n"
        "scripts/run_local.sh sklearn_digits --workers 2\n./infra_clean.sh --volumes --yes\n"
        "mlframework run-task test_echo --anything-goes\n```\n\n"
        "```python\nimport mlframework as mlf\n```\n\n`mlframework COMMAND --help`, `mlframework -v ls`.\n"
    )
    assert all_problems([path]) == []
