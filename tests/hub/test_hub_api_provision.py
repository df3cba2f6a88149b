"""HTTP API routes (incl. 400/404) and provisioning bundle contents."""

from __future__ import annotations

import stat
import time
import tomllib
from pathlib import Path
from typing import Any

from _fakes import FakeDevice, get_json, now_hlc

from cloud_hub import Hub, Registry, provision_device, provision_devices
from protocol import HLC


async def test_api_routes_and_errors(hub: Hub, hub_env: Any, device: FakeDevice) -> None:
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}"
    twin = device.twin("carol")
    h0 = now_hlc(-3_600_000)
    device.publish(
        device.delta(
            1,
            {
                twin: [
                    (h0, "coffee.brews_total", 1),
                    (h0 + 1000, "coffee.strength", 3),
                    (now_hlc(), "coffee.brews_total", 4),
                ]
            },
        )
    )
    await device.wait_acked({1})
    assert (await get_json(f"{hub.api_url}/healthz")) is not None
    await get_json(f"{hub.api_url}/readyz")
    listed = await get_json(f"{base}/twins", token=hub_env.token)
    assert twin in str(listed)
    state = await get_json(f"{base}/twins/{twin}", token=hub_env.token)
    assert state["fields"]["coffee.brews_total"]["value"] == 4
    assert state["fields"]["coffee.strength"]["value"] == 3
    hist = await get_json(
        f"{base}/twins/{twin}/history?field=coffee.brews_total", token=hub_env.token
    )
    assert len(str(hist)) > 0
    assert "4" in str(hist)
    other = FakeDevice(
        hub_env.bundles["dev-1"].parent, hub_env.brand, "dev-1", hub_env.services.mosquitto.port
    )
    try:
        other.publish(other.delta(1, {twin: [(now_hlc(counter=5), "coffee.brews_total", 3)]}))
        await other.wait_acked({1})
    finally:
        other.close()
    down = await get_json(
        f"{base}/twins/{twin}/history?field=coffee.brews_total&every=1h", token=hub_env.token
    )
    # Counter buckets: sum of each device's last cumulative value, carried forward.
    assert down["points"][-1]["value"] == 4 + 3
    lww = await get_json(
        f"{base}/twins/{twin}/history?field=coffee.strength&every=1h", token=hub_env.token
    )
    assert [p["value"] for p in lww["points"]] == [3]
    await get_json(
        f"{base}/twins/{twin}/history?field=no.such_field", status=400, token=hub_env.token
    )
    await get_json(
        f"{base}/twins/{twin}/history?field=coffee.brews_total&every=bogus",
        400,
        token=hub_env.token,
    )
    await get_json(f"{base}/twins/1-{'0' * 32}", status=404, token=hub_env.token)
    await get_json(f"{base}/twins/{'0' * 26}", status=400, token=hub_env.token)
    # Another brand than the key's (malformed or not) is refused before anything else.
    await get_json(f"{hub.api_url}/v1/brands/BAD BRAND!/twins", status=403, token=hub_env.token)
    devices = await get_json(f"{base}/devices", token=hub_env.token)
    assert "dev-0" in str(devices)
    _ = HLC


def test_provisioning_bundle_contents(hub_env: Any) -> None:
    bundle: Path = hub_env.bundles["dev-1"].parent
    cfg = tomllib.loads((bundle / "agent.toml").read_text())
    assert cfg["device"]["id"] == "dev-1"
    assert cfg["device"]["brand"] == hub_env.brand
    assert cfg["device"]["product"] == "coffee"
    assert cfg["device"]["key_file"] == "device.key"
    assert cfg["pseudonym"]["key_file"] == "brand.key"
    assert isinstance(cfg["pseudonym"]["epoch"], int)
    assert cfg["hub"]["public_key_files"] == ["hub.pub"]
    assert cfg["mqtt"]["port"] == hub_env.services.mosquitto.port
    assert cfg["outbox"]["path"] == "outbox.sqlite"
    assert cfg["ingest"]["port"] == 0
    assert stat.S_IMODE((bundle / "device.key").stat().st_mode) == 0o600
    assert len(bytes.fromhex((bundle / "hub.pub").read_text().strip())) == 32
    reg = Registry(hub_env.config.registry.path)
    assert reg is not None


def test_bulk_provisioning_is_fast_and_registered(tmp_path: Path) -> None:
    start = time.monotonic()
    bundles = provision_devices(
        tmp_path / "reg.sqlite",
        tmp_path / "secrets",
        "bulk",
        [(f"m-{i}", "coffee") for i in range(100)],
        tmp_path / "out",
    )
    assert time.monotonic() - start < 2.0
    assert len(bundles) == 100
    one = provision_device(
        tmp_path / "reg.sqlite", tmp_path / "secrets", "bulk", "solo", "coffee", tmp_path / "solo"
    )
    assert one.name == "agent.toml"
    assert (one.parent / "brand.key").read_bytes() == (
        bundles["m-0"].parent / "brand.key"
    ).read_bytes()
