"""Fixtures for tests/store: the state store on a real SQLite file and a real PostgreSQL.

``target`` is parametrized over both backends, so every test that takes it (or
``store``) runs twice: on a SQLite file of its own and on a PostgreSQL database of its
own (the session's server, see tests/conftest.py). Subprocesses that use a store run
``state_worker.py`` in this folder (state_env.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from state_env import Target

from cloud_hub.store import StateStore


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """An empty store of this test's own, on each backend in turn."""
    if request.param == "sqlite":
        return Target("sqlite", f"sqlite:///{tmp_path / 'state.sqlite'}")
    database = request.getfixturevalue("postgres")
    return Target("postgresql", database.url, database.password)


@pytest.fixture
def store(target: Target) -> Iterator[StateStore]:
    """The store at ``target``, migrated."""
    with target.open() as opened:
        yield opened
