"""protocol is sans-I/O and exposes a small, sorted public API."""

from __future__ import annotations

import ast
from pathlib import Path

import protocol

FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "subprocess",
    "threading",
    "sqlite3",
    "paho",
    "aiomqtt",
    "aiohttp",
    "influxdb_client",
    "onnxruntime",
    "urllib",
    "http",
    "requests",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "edge_agent",
    "cloud_hub",
    "firmware_sim",
}
ROOT = Path(protocol.__file__).parent


def _modules() -> list[Path]:
    return sorted(ROOT.glob("*.py"))


def test_protocol_imports_no_io_library() -> None:
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_protocol_has_no_async_code_and_no_open_calls() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), path.name
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{path.name} opens a file"


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 enforces: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_public_api_is_sorted_and_complete() -> None:
    assert protocol.__all__ == sorted(protocol.__all__, key=_isort_key)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_private_modules_are_private() -> None:
    public = [p.name for p in _modules() if not p.name.startswith("_")]
    assert public == []
