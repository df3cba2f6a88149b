"""The hub's metrics in docs/hub.md, "Metrics", are exactly the ones its code emits.

"Emitted" is read from the code itself: every ``.inc("twinsync_hub_...", ...)`` and
``.set("twinsync_hub_...", ...)`` call in cloud_hub (with the label keywords it passes),
found by walking the syntax tree. Every emitted name must be declared in
cloud_hub/_metrics.py (with its HELP text) and documented with the same labels; every
documented or declared name must be emitted somewhere, so a metric that was removed or
renamed cannot linger in the docs or on /metrics.
"""

from __future__ import annotations

import ast
import re

from _markdown import REPO

from cloud_hub import Metrics

_NAME = re.compile(r"`(twinsync_hub_[a-z0-9_]+)(?:\{([a-z_, ]*)\})?`")


def _emitted() -> dict[str, set[str]]:
    """metric name -> label keywords, over every emitting call in cloud_hub."""
    out: dict[str, set[str]] = {}
    for path in sorted((REPO / "cloud_hub").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("inc", "set")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.startswith("twinsync_hub_")
            ):
                labels = {k.arg for k in node.keywords if k.arg not in (None, "amount")}
                for k in node.keywords:  # **{"class": ...}: a label that is a keyword
                    if k.arg is None and isinstance(k.value, ast.Dict):
                        labels |= {
                            key.value
                            for key in k.value.keys
                            if isinstance(key, ast.Constant) and isinstance(key.value, str)
                        }
                out.setdefault(node.args[0].value, set()).update(labels)
    return out


def _documented() -> dict[str, set[str]]:
    text = (REPO / "docs/hub.md").read_text()
    start = text.index("\n## Metrics")
    section = text[start : text.index("\n## ", start + 1)]
    return {
        m.group(1): {label.strip() for label in (m.group(2) or "").split(",") if label.strip()}
        for m in _NAME.finditer(section)
    }


def test_documented_metrics_are_the_emitted_ones_with_their_labels() -> None:
    """docs/hub.md lists every metric the hub emits, no other, each with its labels."""
    emitted, documented = _emitted(), _documented()
    assert emitted, "found no emitting call: the scan is broken"
    assert sorted(set(documented) - set(emitted)) == [], "documented but never emitted"
    assert sorted(set(emitted) - set(documented)) == [], "emitted but not documented"
    wrong = {n: (documented[n], emitted[n]) for n in emitted if documented[n] != emitted[n]}
    assert wrong == {}, "documented labels differ from the emitted ones"


def test_declared_metrics_are_the_emitted_ones() -> None:
    """Every emitted metric is declared (so /metrics has its HELP and TYPE) and every
    declared one is emitted."""
    declared = set(Metrics.declared())
    assert sorted(declared ^ set(_emitted())) == []


def test_every_metric_name_anywhere_in_the_docs_exists() -> None:
    """README.md and docs/*.md name no metric the hub does not emit."""
    emitted = set(_emitted())
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        names = set(re.findall(r"twinsync_hub_[a-z0-9_]+", path.read_text()))
        assert sorted(names - emitted) == [], path.name
