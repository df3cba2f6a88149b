"""The twin query index after a simulated fleet day, through real agents, mosquitto, a
hub and InfluxDB, with the shared state on SQLite and on PostgreSQL.

Every twin firmware_sim's ground truth expects is in the index with exactly the merged
values, HLCs and devices the truth computes (``protocol.TwinState`` over every accepted
signal), nothing else is; the index equals InfluxDB's last values (``check_index``); the
twins route lists exactly the truth's twins and a filter on a truth value finds exactly
the twins that hold it.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from _fakes import get_json
from conftest import build_stack

from cloud_hub import Hub
from cloud_hub.store import InfluxStore, check_index, state_store_from, stored_value
from firmware_sim import FleetRunner
from protocol import FieldValue
from twinsync.services import LocalServices

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("state_backend", ["sqlite", "postgresql"])
async def test_the_index_after_a_fleet_day_is_the_ground_truth(
    tmp_path: Path,
    services: LocalServices,
    unique: str,
    state_backend: str,
    request: pytest.FixtureRequest,
) -> None:
    overrides: dict[str, Any] = {}
    if state_backend == "postgresql":
        overrides["state"] = request.getfixturevalue("postgres").hub_settings()
    stack = build_stack(
        tmp_path, services, devices=60, days=2.0, db=f"ix{unique}", hub_overrides=overrides
    )
    async with Hub(stack.hub_config) as hub:
        await hub.ready.wait()
        runner = FleetRunner(
            stack.fleet, stack.bundles, "127.0.0.1", services.mosquitto.port, tmp_path / "agents"
        )
        try:
            await runner.run()
            assert await runner.drain(120), "outboxes not drained"
        finally:
            await runner.close()
        stack.assert_points_match()

        with state_store_from(stack.hub_config.state) as state:
            async with InfluxStore(stack.hub_config.influx) as store:
                assert await check_index(state, store, stack.brand) == []
            with state.transaction(readonly=True) as tx:
                rows = tx.execute(
                    "SELECT twin, field, device, hlc, num, txt FROM twin_fields WHERE brand = ?",
                    (stack.brand,),
                ).fetchall()
        indexed: dict[str, dict[str, FieldValue]] = {}
        for twin, field, device, hlc, num, txt in rows:
            indexed.setdefault(twin, {})[field] = FieldValue(
                stored_value(field, num, txt), hlc, device
            )
        truth = {t: s.fields() for t, s in stack.truth.twins.items() if s}
        assert sum(len(f) for f in truth.values()) > 100  # a fleet's worth of values
        assert indexed == truth

        url = f"{hub.api_url}/v1/brands/{stack.brand}/twins"
        listed = await get_json(f"{url}?limit=10000", token=stack.token)
        assert sorted(listed["twins"]) == sorted(truth)
        assert listed["count"] == len(truth)
        # Filters on values the truth holds find exactly their holders.
        brews = {
            t: f["coffee.brews_total"].value for t, f in truth.items() if "coffee.brews_total" in f
        }
        modes = {t: f["thermostat.mode"].value for t, f in truth.items() if "thermostat.mode" in f}
        assert brews
        assert modes
        median, mode = sorted(brews.values())[len(brews) // 2], sorted(modes.values())[0]
        for where, want in (
            (f"coffee.brews_total > {median}", {t for t, v in brews.items() if v > median}),
            (f"thermostat.mode = '{mode}'", {t for t, v in modes.items() if v == mode}),
            (
                "product = coffee",
                set(brews) | {t for t in truth if any(n.startswith("coffee.") for n in truth[t])},
            ),
        ):
            query = urllib.parse.urlencode({"where": where, "limit": 10000})
            found = await get_json(f"{url}?{query}", token=stack.token)
            assert set(found["twins"]) == want, where
