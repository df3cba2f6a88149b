"""Reading the commands the documentation tells users to run, from the Markdown itself.

Tests that run documented commands take them from README.md and docs/*.md through these
helpers, never from a copy, so a changed command is tested as changed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHELL_LANGS = ("sh", "bash", "shell", "console")
_FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: where it is, under which heading, its language and text."""

    file: str
    line: int  # of the opening fence, 1-based
    heading: str  # the nearest heading above it, without the leading #'s
    lang: str
    code: str


@dataclass(frozen=True)
class Command:
    """One shell command of a block (continuation lines joined), as bash would read it."""

    file: str
    line: int
    heading: str
    text: str  # the source, continuation backslashes and trailing comment included

    @property
    def words(self) -> list[str]:
        """The command's words with comments removed (shell quoting honoured)."""
        return shlex.split(self.text.replace("\\\n", " "), comments=True)

    def __str__(self) -> str:
        return " ".join(self.words)


def doc_files() -> list[Path]:
    """Every user-facing Markdown file that may tell someone to run a command."""
    return [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "deploy/README.md",
        *sorted((REPO / "deploy").glob("*/README.md")),
    ]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file."""
    out: list[Block] = []
    heading, fence, indent, lang, start, body = "", "", "", "", 0, []
    rel = str(path.relative_to(REPO))
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _FENCE.match(line)
        if fence:
            if match and match.group(2) == fence and not match.group(3):
                out.append(Block(rel, start, heading, lang, "\n".join(body) + "\n"))
                fence = ""
            else:  # a block inside a list item is indented like its fence
                body.append(line.removeprefix(indent))
        elif match:
            indent, fence, lang = match.group(1), match.group(2), match.group(3)
            start, body = number, []
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return out


def section_blocks(path: Path, heading: str, langs: tuple[str, ...] = SHELL_LANGS) -> list[Block]:
    """The blocks of ``langs`` under the heading ``heading`` (and its sub-headings)."""
    text = path.read_text().splitlines()
    level = None
    inside: set[str] = set()
    fence = False
    for line in text:
        if line.startswith("```"):
            fence = not fence
        if fence or not line.startswith("#"):
            continue
        hashes = len(line) - len(line.lstrip("#"))
        title = line.lstrip("#").strip()
        if title == heading:
            level = hashes
            inside.add(title)
        elif level is not None:
            if hashes <= level:
                break
            inside.add(title)
    if level is None:
        raise AssertionError(f"{path.name} has no heading {heading!r}")
    return [b for b in blocks(path) if b.heading in inside and b.lang in langs]


_OPENERS = {"if", "for", "while", "until", "case", "{"}
_CLOSERS = {"fi", "done", "esac", "}"}


def _depth(line: str) -> int:
    """How many compound commands (``for ... done``, ``if ... fi``) a line opens, net."""
    try:
        words = [w.rstrip(";") for w in shlex.split(line, comments=True)]
    except ValueError:  # an open quote continues on the next line
        return 0
    return sum(w in _OPENERS for w in words) - sum(w in _CLOSERS for w in words)


def commands(block: Block) -> list[Command]:
    """The commands of a shell block: blank and comment-only lines dropped, lines ending
    in a backslash joined with the next, a compound command (``for ...; do`` to
    ``done``) kept whole."""
    out: list[Command] = []
    pending: list[str] = []
    first = depth = 0
    for offset, line in enumerate(block.code.splitlines(), start=1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            first = block.line + offset
        pending.append(line)
        depth += _depth(line)
        if not line.endswith("\\") and depth <= 0:
            out.append(Command(block.file, first, block.heading, "\n".join(pending)))
            pending, depth = [], 0
    if pending:
        out.append(Command(block.file, first, block.heading, "\n".join(pending)))
    return out


def documented_commands() -> list[Command]:
    """Every command in a shell block of README.md, docs/*.md and deploy/**/README.md."""
    return [
        command
        for path in doc_files()
        if path.exists()
        for block in blocks(path)
        if block.lang in SHELL_LANGS
        for command in commands(block)
    ]
