"""Helpers for tests/hub: the hub's config on the test services and an InfluxDB reader."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub import HubConfig, load_hub_config
from firmware_sim.services import LocalServices


@dataclass
class HubEnv:
    config: HubConfig
    bundles: dict[str, Path]
    brand: str
    services: LocalServices
    #: an API key of ``brand`` with every scope
    token: str = ""

    def influx(self, q: str) -> list[dict[str, Any]]:
        url = f"{self.services.influxd.url}/query?" + urllib.parse.urlencode(
            {"db": self.config.influx.database, "q": q, "epoch": "ns"}
        )
        with urllib.request.urlopen(url) as resp:
            results: list[dict[str, Any]] = json.loads(resp.read())["results"]
            return results

    def write(self, lines: list[str]) -> None:
        """Write line-protocol ``lines`` (ns precision) straight into the test database
        (created first if need be, as the hub would)."""
        create = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.config.influx.database}"'})
        with urllib.request.urlopen(f"{self.services.influxd.url}/query", create.encode()):
            pass
        url = f"{self.services.influxd.url}/write?" + urllib.parse.urlencode(
            {"db": self.config.influx.database, "precision": "ns"}
        )
        request = urllib.request.Request(url, data="\n".join(lines).encode(), method="POST")
        with urllib.request.urlopen(request) as resp:
            assert resp.status == 204

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
        "influx": {"url": services.influxd.url, "database": db, "batch_max_wait_ms": 20},
        "api": {"port": 0},
        "registry": {"path": str(tmp / "registry.sqlite")},
        "keys": {"secrets_dir": str(tmp / "secrets")},
        "models": {"dir": str(tmp / "models")},
    }
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return load_hub_config(None, data, environ={})
