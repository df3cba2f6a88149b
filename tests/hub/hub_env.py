"""Helpers for tests/hub: the hub's config on the test services, its state store and an
InfluxDB reader (with the credentials of the launcher's InfluxDB, which refuses anonymous
requests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud_hub import HubConfig, load_hub_config
from cloud_hub.store import InfluxStore, StateStore, check_index, state_store_from
from twinsync.services import LocalServices

#: run a test on both state stores: the SQLite file and PostgreSQL (tests/hub/conftest.py)
both_stores = pytest.mark.parametrize("state_backend", ["sqlite", "postgresql"])


@dataclass
class HubEnv:
    config: HubConfig
    bundles: dict[str, Path]
    brand: str
    services: LocalServices
    #: an API key of ``brand`` with every scope
    token: str = ""

    def state(self) -> StateStore:
        """The hub's state store (as ``config.state`` names it): close it when done."""
        return state_store_from(self.config.state)

    def state_toml(self, folder: Path) -> str:
        """The hub.toml lines of a process in ``folder`` that shares this hub's state: the
        registry file, or the PostgreSQL url with the password in a file (0600) there."""
        state = self.config.state
        if state.target.scheme == "sqlite":
            return f'[registry]\npath = "{self.config.registry.path}"\n'
        secret = folder / "state.password"
        secret.write_text(state.secret() + "\n")
        secret.chmod(0o600)
        return f'[state]\nurl = "{state.url}"\npassword_file = "{secret}"\n'

    def influx(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL on the test database with the launcher's admin credentials (a
        failed statement stays in its result, e.g. before the database exists)."""
        return self.services.influxd.query(q, self.config.influx.database, check=False)

    def write(self, lines: list[str]) -> None:
        """Write line-protocol ``lines`` (ns precision) straight into the test database
        (created first if need be, as the hub would)."""
        influxd, db = self.services.influxd, self.config.influx.database
        influxd.query(f'CREATE DATABASE "{db}"')
        influxd.write(db, lines)

    async def index_differences(self) -> list[str]:
        """Where the brand's twin query index differs from what InfluxDB holds (empty:
        equal; cloud_hub.store.check_index)."""
        with self.state() as state:
            async with InfluxStore(self.config.influx) as store:
                return await check_index(state, store, self.brand)

    def points(self) -> set[tuple[Any, ...]]:
        """Every twin point of every field class's measurement as (device, twin, ts_ns,
        field, value)."""
        out = set()
        query = 'SELECT * FROM "twin","twin_profile" GROUP BY *'
        for s in self.influx(query)[0].get("series", []):
            cols = s["columns"]
            for row in s["values"]:
                for col, value in zip(cols[1:], row[1:], strict=True):
                    if value is not None:
                        out.add((s["tags"]["device"], s["tags"]["twin"], row[0], col, value))
        return out


def make_config(
    tmp: Path, services: LocalServices, db: str, brand: str | None = None, **over: Any
) -> HubConfig:
    """A hub on the shared test services that serves only ``brand`` (other tests' retained
    status messages stay out of its counters)."""
    data: dict[str, Any] = {
        "mqtt": {
            "brands": [brand] if brand else [],
            "port": services.mosquitto.port,
            "client_id": f"hub-{db}",
            "shared_group": f"g{db}",
        },
        "influx": {**services.influxd.hub_settings(db), "batch_max_wait_ms": 20},
        # The test receivers listen on 127.0.0.1 over plain http: the operator's allow-list
        # (the hub's own InfluxDB, broker and API stay refused; tests/hub/test_egress.py).
        "webhooks": {"allow": ["127.0.0.1"], "require_https": False},
        "api": {"port": 0},
        "registry": {"path": str(tmp / "registry.sqlite")},
        "state": {},
        "keys": {"secrets_dir": str(tmp / "secrets")},
        "models": {"dir": str(tmp / "models")},
    }
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return load_hub_config(None, data, environ={})
