"""The spine, whole: a simulated fleet through real agents, mosquitto, hub and InfluxDB.

50+ devices x 1 simulated day. Every point in InfluxDB and every twin the API returns
must equal firmware_sim's ground truth: nothing missing, nothing extra. A sniffer on '#'
and scans of InfluxDB, the logs and the outboxes prove no raw subject leaves a device.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from _fakes import get_json
from conftest import Sniffer, build_stack, subject_forms

from cloud_hub import Hub
from firmware_sim import FleetRunner
from twinsync.services import LocalServices

pytestmark = pytest.mark.e2e


async def test_fleet_day_matches_ground_truth_point_by_point(
    tmp_path: Path,
    services: LocalServices,
    sniffer: Sniffer,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = build_stack(tmp_path, services, devices=60, days=1.0, db=f"e2e{unique}")
    counts = stack.truth.counts()
    assert counts["accepted"] > 15_000
    assert counts.get("duplicate", 0) > 0  # faults present
    assert counts.get("rejected", 0) > 0

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
        assert runner.mismatches(stack.truth) == []
        assert runner.reboots_done > 0

        stack.assert_points_match()

        listed = await get_json(
            f"{hub.api_url}/v1/brands/{stack.brand}/twins?limit=10000", token=stack.token
        )
        assert sorted(listed["twins"]) == sorted(stack.truth.twins)
        for twin in stack.truth.twins:
            body = await get_json(
                f"{hub.api_url}/v1/brands/{stack.brand}/twins/{twin}", token=stack.token
            )
            got = {name: f["value"] for name, f in body["fields"].items()}
            assert got == stack.truth.twin_values(twin), twin
        devices = await get_json(
            f"{hub.api_url}/v1/brands/{stack.brand}/devices", token=stack.token
        )
        assert {d["device"] for d in devices["devices"]} == set(stack.bundles)
        senders = {p[1] for p in stack.truth.expected_points}
        assert {d["device"] for d in devices["devices"] if d["last_seq"]} == senders
        assert not any(d["online"] for d in devices["devices"])  # all agents said goodbye

    # Privacy: no raw subject on the wire, in InfluxDB, in the logs or the outboxes.
    assert len(sniffer.seen) > 100
    influx_dump = repr(
        stack.influx(
            f'SELECT * FROM "twin","twin_profile" WHERE "brand" = \'{stack.brand}\' GROUP BY *'
        )
    ).encode()
    tag_dump = repr(
        stack.influx('SHOW TAG VALUES FROM "twin","twin_profile" WITH KEY IN ("twin", "device")')
    )
    logs = "\n".join(r.getMessage() for r in caplog.records).encode()
    outboxes = b"".join(p.read_bytes() for p in (tmp_path / "agents").rglob("*.sqlite*"))
    leaks = []
    for subject in stack.truth.subjects:
        for form in subject_forms(subject):
            for where, blob in (
                ("influx", influx_dump),
                ("tags", tag_dump.encode()),
                ("logs", logs),
                ("outbox", outboxes),
            ):
                if form in blob:
                    leaks.append((where, form))
            for topic, payload in sniffer.seen:
                if form in payload or form in topic.encode():
                    leaks.append(("wire", form))
    assert leaks == []
