"""Shared fixtures: real mosquitto, influxd and PostgreSQL on free loopback ports in temp dirs.

``services`` is started once per session and shared by tests that do not break it (each
test uses its own InfluxDB database and brand/device names). Tests that kill or restart a
service take ``own_services`` instead, a private pair that dies with the test. PostgreSQL
(the hub's state store on several hosts) is started only for the tests that ask for it:
``postgres`` is a database of the test's own on a server shared by the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinsync.services import LocalServices, Postgres, PostgresDatabase


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """mosquitto + influxd shared by the whole session (do not kill these)."""
    with LocalServices(tmp_path_factory.mktemp("services")) as svc:
        yield svc


@pytest.fixture
def own_services(tmp_path: Path) -> Iterator[LocalServices]:
    """A private mosquitto + influxd pair that a test may kill and restart."""
    with LocalServices(tmp_path / "services") as svc:
        yield svc


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL server shared by the session (run as the 'postgres' user when the
    tests run as root); tests take a database of their own from it (``postgres``)."""
    with Postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres(postgres_server: Postgres, unique: str) -> Iterator[PostgresDatabase]:
    """An empty database of this test's own on the shared server, dropped afterwards."""
    database = postgres_server.create_database(f"t_{unique}")
    yield database
    postgres_server.drop_database(database.name)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for database, brand and device names."""
    return uuid.uuid4().hex[:8]
