"""The package layout follows the data flow, and no package imports one above it.

Top level: ``protocol`` (pure) < ``edge_agent``, ``cloud_hub``, ``firmware_sim`` (the
simulator drives real agents, so it may import ``edge_agent``) < ``twinsync`` (command,
launcher, demo, training) < ``bench``. Inside ``cloud_hub`` the subpackages are layered
along the flow: the core modules (errors, config, metrics, addresses, downlink sealing,
supervision) < ``store`` < ``registry`` < ``models`` < ``privacy`` < ``ingest`` < ``api``
< the hub itself and its command line. Another package is imported through its root
(``from cloud_hub.store import InfluxStore``), never through a private module, and no
module imports itself back through a circle. Imports under ``if TYPE_CHECKING:`` are
annotations only and do not count.

Private means private for tests too: no module outside a package (``tests``, ``bench``,
``twinsync``, ``firmware_sim`` or another of ours) imports one of its ``_private``
modules or names (``edge_agent._twin``, ``from edge_agent import _ort``), not even the
package's own tests. The line is drawn at a public module rather than around "a
package's own tests": what tests need of a package's internals is named in its
``testing`` module (``edge_agent.testing``, ``cloud_hub.testing``), so it is visible,
documented and kept working, and a refactor inside the package breaks no test's import.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP = {"protocol": 0, "edge_agent": 1, "cloud_hub": 1, "firmware_sim": 1, "twinsync": 2, "bench": 3}
#: what a top-level package may import besides itself and packages of a lower rank
ALLOWED_SAME_RANK = {("firmware_sim", "edge_agent")}
HUB_LAYERS = ["core", "store", "registry", "models", "privacy", "triggers", "ingest", "api", "top"]
#: the hub's composition root (_hub.py and the parts of it split into their own modules),
#: its command line and its root: above every layer
HUB_TOP = {"_hub", "_hub_api", "_hub_privacy", "cli", "__init__"}
#: every package of ours: none imports another's private modules
OURS = (*TOP, "tests")


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    root = REPO / package
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _runtime_imports(path: Path, module: str) -> Iterator[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import not under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]


def _hub_layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in HUB_TOP:
        return "top"
    return parts[1] if parts[1] in HUB_LAYERS else "core"


def test_top_level_packages_import_only_below_them() -> None:
    wrong = []
    for package, rank in TOP.items():
        for module, path in _modules(package):
            for target, _names in _runtime_imports(path, module):
                other = target.split(".")[0]
                if other in TOP and other != package:
                    ok = TOP[other] < rank or (package, other) in ALLOWED_SAME_RANK
                    if not ok:
                        wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_hub_subpackages_import_only_lower_layers_and_through_their_roots() -> None:
    wrong = []
    for module, path in _modules("cloud_hub"):
        mine = _hub_layer(module)
        for target, _names in _runtime_imports(path, module):
            if not target.startswith("cloud_hub"):
                continue
            theirs = _hub_layer(target)
            if HUB_LAYERS.index(theirs) > HUB_LAYERS.index(mine):
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
            parts = target.split(".")
            if theirs not in ("core", "top") and theirs != mine and len(parts) > 2:
                wrong.append(f"{module} imports {target}: use its package root")
    assert wrong == []


def _private_import(package: str, target: str, names: list[str]) -> str | None:
    """What ``package`` imports that is private to another of our packages, if anything."""
    parts = target.split(".")
    if parts[0] not in OURS or parts[0] == package:
        return None
    if any(p.startswith("_") for p in parts[1:]):
        return target
    private = [n for n in names if n.startswith("_")]
    return f"{target}: {', '.join(private)}" if private else None


def test_no_package_imports_anothers_private_modules() -> None:
    wrong = []
    for package in OURS:
        for module, path in _modules(package):
            for target, names in _runtime_imports(path, module):
                found = _private_import(package, target, names)
                if found is not None:
                    wrong.append(f"{module} imports {found}")
    assert wrong == []


#: ``import pkg._x`` or ``from pkg._x import`` (``from pkg import _x``) in a string: the
#: scripts tests run in a fresh interpreter
_SCRIPT_IMPORT = re.compile(
    r"^\s*(?:from\s+(?P<from>[\w.]+)\s+import\s+(?P<names>[\w, ]+)|import\s+(?P<mod>[\w.]+))",
    re.M,
)


def test_scripts_in_tests_import_no_private_modules() -> None:
    """The same rule for code tests run in a subprocess (``python -c <script>``)."""
    wrong = []
    for module, path in _modules("tests"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            for match in _SCRIPT_IMPORT.finditer(node.value):
                target = match["from"] or match["mod"]
                names = [n.strip() for n in (match["names"] or "").split(",")]
                found = _private_import("tests", target, names)
                if found is not None:
                    wrong.append(f"{module}:{node.lineno} runs a script importing {found}")
    assert wrong == []


def test_the_private_import_rule_catches_each_form() -> None:
    """The checks above can fail: each way of reaching a private module is caught, and
    what is public (a root, ``pkg.testing``, a package's own modules) is not."""
    assert _private_import("tests", "edge_agent._twin", ["TwinBook"]) == "edge_agent._twin"
    assert _private_import("tests", "edge_agent", ["Agent", "_ort"]) == "edge_agent: _ort"
    assert _private_import("bench", "twinsync.training._fit", ["fit_churn"]) is not None
    assert _private_import("tests", "protocol._seal", []) == "protocol._seal"
    assert _private_import("tests", "edge_agent.testing", ["TwinBook"]) is None
    assert _private_import("tests", "cloud_hub.store", ["InfluxStore"]) is None
    assert _private_import("edge_agent", "edge_agent._twin", ["TwinBook"]) is None
    assert _private_import("tests", "tests._cli", ["run_cli"]) is None
    # Built from parts so that the scan of this file's own strings does not see it.
    script = "import json\n    from edge_agent." + "_ort import runtime\nimport protocol." + "_seal"
    found = [m["from"] or m["mod"] for m in _SCRIPT_IMPORT.finditer(script)]
    assert found == ["json", "edge_agent._ort", "protocol._seal"]


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    known = {m for p in TOP for m, _ in _modules(p)}
    for package in TOP:
        for module, path in _modules(package):
            edges = graph.setdefault(module, set())
            for target, names in _runtime_imports(path, module):
                for candidate in (*(f"{target}.{n}" for n in names), target):
                    if candidate in known and candidate != module:
                        edges.add(candidate)
                        break
    # Tarjan's strongly connected components: any with two or more modules is a cycle
    # (a package's __init__ importing its own modules and being imported back by them
    # through the package root is the one allowed shape: the root is only a facade).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []
