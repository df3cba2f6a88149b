"""The client installs without the hub: ``twinsync.client`` imports the standard library,
pydantic and ``protocol`` only, and aiohttp only in its asyncio transport, imported when
``AsyncClient`` is asked for. A brand backend's ``pip install`` of the base package is
enough for :class:`~twinsync.client.Client`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "twinsync/client"
ALLOWED = {"pydantic", "protocol", "twinsync"}
ASYNC_ONLY = {"aiohttp": {"_aiohttp.py", "_async.py"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_the_client_imports_only_the_standard_library_pydantic_and_protocol() -> None:
    wrong = []
    for path in sorted(CLIENT.glob("*.py")):
        for name in _imports(path):
            if name in sys.stdlib_module_names or name in ALLOWED:
                continue
            if path.name in ASYNC_ONLY.get(name, set()):
                continue
            wrong.append(f"{path.name} imports {name}")
    assert wrong == []


def test_the_blocking_client_loads_neither_aiohttp_nor_the_hub() -> None:
    probe = (
        "import sys; from twinsync.client import Client, ClientError; "
        "print(sorted(m for m in ('aiohttp', 'cloud_hub', 'edge_agent', 'paho') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
