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
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP = {"protocol": 0, "edge_agent": 1, "cloud_hub": 1, "firmware_sim": 1, "twinsync": 2, "bench": 3}
#: what a top-level package may import besides itself and packages of a lower rank
ALLOWED_SAME_RANK = {("firmware_sim", "edge_agent")}
HUB_LAYERS = ["core", "store", "registry", "models", "privacy", "ingest", "api", "top"]
HUB_TOP = {"_hub", "cli", "__init__"}


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


def test_code_outside_the_hub_uses_its_public_packages_only() -> None:
    wrong = []
    for package in ("twinsync", "bench", "tests", "firmware_sim", "edge_agent"):
        for module, path in _modules(package):
            for target, _names in _runtime_imports(path, module):
                parts = target.split(".")
                if parts[0] == "cloud_hub" and any(p.startswith("_") for p in parts[1:]):
                    wrong.append(f"{module} imports {target}")
    assert wrong == []


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
