"""Every module path the documentation names exists, and it names public things only.

README.md, docs/, deploy/ and the Makefile point readers at code: ``cloud_hub/...py``,
``edge_agent/...py``, ``protocol/...py``, ``firmware_sim/...py``, ``twinsync/...``
(a file or a folder). When the code moves, a stale path sends the reader nowhere, so
each one must exist in the tree. A protocol label that looks like a path
(``twinsync/twin/v1``, a domain-separation string ending in a version) is not one.

Dotted names (``cloud_hub.privacy.verify_receipt``) must not go through a private
module (``cloud_hub.privacy._erasure...``): the documentation names what users may
import, and that survives a refactor inside the package.

docs/architecture.md draws ``cloud_hub`` as a tree, a line per module: it must name
every module the package has, and only those.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from _markdown import REPO

PACKAGES = ("cloud_hub", "edge_agent", "protocol", "twinsync", "firmware_sim")
_NAMES = "|".join(PACKAGES)
#: a path that starts at one of our packages (not inside another path: /etc/twinsync/)
_PATH = re.compile(rf"(?<![\w./%-])(?:{_NAMES})/[\w./-]*[\w/]")
#: a label such as ``twinsync/twin/v1``: versioned, a string in the protocol, not a path
_LABEL = re.compile(r"/v\d+$")
#: a dotted name of ours with a private part
_PRIVATE_NAME = re.compile(rf"(?<![\w./-])(?:{_NAMES})(?:\.\w+)*\._[a-z]\w*")


def _documents() -> Iterator[Path]:
    yield REPO / "README.md"
    yield REPO / "Makefile"
    yield from sorted((REPO / "docs").rglob("*.md"))
    for path in sorted((REPO / "deploy").rglob("*")):
        if path.is_file() and path.suffix not in (".json", ".png", ".pem", ".key"):
            yield path


def _mentions(pattern: re.Pattern[str]) -> Iterator[tuple[str, str]]:
    """(``file:line``, text) of every match in the documents."""
    for path in _documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                yield f"{path.relative_to(REPO)}:{number}", match.group(0)


def _missing(paths: list[tuple[str, str]], root: Path) -> list[str]:
    return [
        f"{where}: {path}"
        for where, path in paths
        if not _LABEL.search(path) and not (root / path).exists()
    ]


def test_every_module_path_in_the_docs_exists() -> None:
    paths = list(_mentions(_PATH))
    assert len(paths) > 10  # the pattern finds what the docs name
    assert _missing(paths, REPO) == []


def test_the_docs_name_no_private_module() -> None:
    assert [f"{where}: {name}" for where, name in _mentions(_PRIVATE_NAME)] == []


def _tree(text: str, root: str) -> set[str]:
    """The files of the fenced tree that starts with ``root/`` (two spaces a level)."""
    lines = text[text.index(f"```\n{root}/\n") + 4 :].split("\n```", 1)[0].splitlines()
    stack: list[str] = []
    files = set()
    for line in lines:
        name = line.split()[0]
        level = (len(line) - len(line.lstrip(" "))) // 2
        del stack[level:]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        else:
            files.add("/".join([*stack, name]))
    return files


def test_the_architecture_tree_names_every_hub_module() -> None:
    drawn = _tree((REPO / "docs" / "architecture.md").read_text(), "cloud_hub")
    present = {str(p.relative_to(REPO)) for p in (REPO / "cloud_hub").rglob("*.py")}
    assert sorted(present - drawn) == []  # modules the tree leaves out
    assert sorted(drawn - present) == []  # modules it names that are not there


def test_the_patterns_tell_module_paths_from_other_paths() -> None:
    """The checks can fail: each shape of reference is found, or left alone, as meant."""
    line = (
        "see `cloud_hub/cli/__init__.py`, twinsync/services/ and (protocol/_seal.py); "
        "not /etc/twinsync/hub.toml, %S/twinsync/x or github.com/twinsync/twinsync/blob"
    )
    assert _PATH.findall(line) == [
        "cloud_hub/cli/__init__.py",
        "twinsync/services/",
        "protocol/_seal.py",
    ]
    found = [("doc:1", p) for p in ["cloud_hub/_gone.py", "twinsync/twin/v1", "protocol/"]]
    assert _missing(found, REPO) == ["doc:1: cloud_hub/_gone.py"]
    names = "cloud_hub.privacy._erasure.verify_receipt, cloud_hub.privacy.verify_receipt"
    assert _PRIVATE_NAME.findall(names) == ["cloud_hub.privacy._erasure"]
    tree = "```\npkg/\n  __init__.py   x\n  sub/          y\n    _a.py\n  _b.py\n```\n"
    assert _tree(tree, "pkg") == {"pkg/__init__.py", "pkg/sub/_a.py", "pkg/_b.py"}
