"""Shared fixtures: real mosquitto and influxd on free loopback ports in temp dirs.

``services`` is started once per session and shared by tests that do not break it (each
test uses its own InfluxDB database and brand/device names). Tests that kill or restart a
service take ``own_services`` instead, a private pair that dies with the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinsync.services import LocalServices


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


@pytest.fixture
def unique() -> str:
    """A short unique suffix for database, brand and device names."""
    return uuid.uuid4().hex[:8]
