"""docs/privacy.md, "Threats tested": every test the table names exists.

The table is a claim that an attack is tried on every CI run; a renamed or deleted test
would leave the claim standing with nothing behind it. Each ``tests/...py::name`` in the
section must name a test function in that file, and every row must name at least one.
"""

from __future__ import annotations

import ast
import re

from _markdown import REPO

_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _section() -> str:
    text = (REPO / "docs/privacy.md").read_text()
    start = text.index("## Threats tested")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _tests_in(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text(), path)
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_row_names_tests_that_exist() -> None:
    rows = [
        line
        for line in _section().splitlines()
        if line.startswith("| ") and not line.startswith(("| attack", "|---"))
    ]
    assert len(rows) >= 30
    missing = []
    for row in rows:
        refs = _REF.findall(row)
        assert refs, f"a row names no test: {row[:80]}"
        for path, name in refs:
            if not (REPO / path).is_file() or name not in _tests_in(path):
                missing.append(f"{path}::{name}")
    assert missing == []
