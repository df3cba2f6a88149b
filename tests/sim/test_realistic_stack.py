"""The realistic fleet, whole: real agents (each told its zone), mosquitto, a hub and
InfluxDB end up with exactly what the ground truth says, mess and all (skewed and
drifting clocks, loss, outages, anomalies, shared devices, time zones)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloud_hub import Hub, load_hub_config, provision_devices
from firmware_sim import Fleet, FleetRunner, FleetSpec, GroundTruth, Point, normalise_value
from protocol import FIELDS
from twinsync.services import LocalServices

pytestmark = pytest.mark.e2e

DAY_MS = 86_400_000


def _points(services: LocalServices, database: str, brand: str) -> set[Point]:
    out: set[Point] = set()
    query = f'SELECT * FROM "twin","twin_profile" WHERE "brand" = \'{brand}\' GROUP BY *'
    for series in services.influxd.query(query, database, check=False)[0].get("series", []):
        tags, columns = series["tags"], series["columns"]
        for row in series["values"]:
            for column, raw in zip(columns[1:], row[1:], strict=True):
                if raw is not None:
                    value = normalise_value(FIELDS[column].type, raw)
                    out.add((tags["brand"], tags["device"], tags["twin"], row[0], column, value))
    return out


async def test_a_realistic_fleet_matches_its_ground_truth_end_to_end(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    brand, database = f"r{unique}", f"real{unique}"
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text(
        f"""
[mqtt]
brands = ["{brand}"]
port = {services.mosquitto.port}
client_id = "hub-{database}"
shared_group = "hubs-{database}"

{services.influxd.hub_toml(database)}batch_max_wait_ms = 20

[api]
port = 0

[registry]
path = "registry.sqlite"

[keys]
secrets_dir = "secrets"
"""
    )
    config = load_hub_config(hub_toml, None, environ={})
    now = time.time_ns() // 1_000_000
    # the demo's window: the last day but one, clocks up to 2 h off either way
    spec = FleetSpec.realistic(seed=18, devices=24, days=1, brand=brand,
                               start_ms=(now - 2 * DAY_MS) // 60_000 * 60_000)  # fmt: skip
    fleet = Fleet.generate(spec)
    assert {d.tz for d in fleet.devices} - {"UTC"}  # devices in zones
    assert any(d.drift_ppm for d in fleet.devices)  # clocks off and drifting
    assert sum(fleet.truth(d.device_id).lost for d in fleet.devices) > 0
    bundles = provision_devices(
        config.registry.path, config.keys.secrets_dir, brand,
        [(d.device_id, d.product) for d in fleet.devices],
        tmp_path / "bundles", "127.0.0.1", services.mosquitto.port,
    )  # fmt: skip
    key = (next(iter(bundles.values())).parent / "brand.key").read_bytes()
    truth = GroundTruth.compute(fleet, key, 1, now_ms=time.time_ns() // 1_000_000)
    assert truth.counts()["accepted"] > 3000
    async with Hub(config) as hub:
        await hub.ready.wait()
        runner = FleetRunner(fleet, bundles, "127.0.0.1", services.mosquitto.port,
                             tmp_path / "agents")  # fmt: skip
        try:
            await runner.run()
            assert await runner.drain(120), "outboxes not drained"
            zoned = [d for d in fleet.devices if d.tz != "UTC"]
            assert all(runner.agents[d.device_id].config.device.timezone == d.tz for d in zoned)
        finally:
            await runner.close()
        assert runner.mismatches(truth) == []
    got, want = _points(services, database, brand), truth.expected_points
    assert want
    assert got == want, f"{len(want - got)} missing, {len(got - want)} extra of {len(want)}"
