"""Access requests: everything the hub holds about one customer, explained."""

from __future__ import annotations

from typing import Any

import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from hub_env import HubEnv

from cloud_hub import Hub
from twinsync.client import AsyncClient

SUBJECT = "cora@example.test"


async def _access(hub: Hub, env: HubEnv, subject: object) -> tuple[int, Any]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/privacy/access"
    return await send_json("POST", url, {"subject": subject}, env.token)


async def test_access_exports_fields_sources_purposes_and_explained_predictions(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    cora = device.twin(SUBJECT)
    h = now_hlc(-60_000)
    device.publish(
        device.delta(
            1,
            {
                cora: [
                    (h, "coffee.brews_total", 7),
                    (h + 1, "coffee.strength", 4),
                    (h + 2, "coffee.f_events_per_day_7d", 2.5),
                    (h + 3, "coffee.segment", 3),
                    (h + 4, "coffee.segment_model", "segment-coffee@2"),
                    (h + 5, "coffee.churn_risk", 0.12),
                    (h + 6, "coffee.churn_model", "churn-coffee@1"),
                ],
                device.twin("someone else"): [(h, "coffee.brews_total", 1)],
            },
        )
    )
    await device.wait_acked({1})
    status, export = await _access(hub, hub_env, SUBJECT)
    assert status == 200, export
    (twin,) = export["twins"]
    assert twin["twin"] == cora
    assert twin["devices"] == ["dev-0"]
    assert twin["stored_points"] == 7
    by_field = {f["field"]: f for f in twin["fields"]}
    assert by_field["coffee.brews_total"] | {"updated_ms": 0} == {
        "field": "coffee.brews_total",
        "value": 7,
        "updated_ms": 0,
        "source_device": "dev-0",
        "purpose": "service",
        "class": "signal",
        "unit": "cups",
    }
    assert by_field["coffee.strength"]["purpose"] == "personalization"
    assert by_field["coffee.f_events_per_day_7d"]["class"] == "feature"
    assert by_field["coffee.segment_model"]["class"] == "model_ref"
    predictions = {p["field"]: p for p in twin["predictions"]}
    assert predictions["coffee.segment"]["model"] == "segment-coffee@2"
    assert "segment 3" in predictions["coffee.segment"]["explanation"]
    assert "12%" in predictions["coffee.churn_risk"]["explanation"]
    assert predictions["coffee.churn_risk"]["model"] == "churn-coffee@1"
    assert set(export["purposes"]) == {"service", "analytics", "personalization", "marketing"}
    assert export["recipients"]["brand_backends"] == ["tests"]
    assert export["retention"]["twin_points"] == "until erased"
    # Unknown customers get an empty export, not an error; requests are tracked.
    status, empty = await _access(hub, hub_env, "nobody@example.test")
    assert (status, empty["twins"]) == (200, [])
    requests = await get_json(
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/requests", token=hub_env.token
    )
    kinds = [(r["kind"], r["state"], r["receipt"]) for r in requests["requests"]]
    assert ("access", "done", {"twins": 1, "fields": 7}) in kinds
    assert not any("cora@" in r.getMessage() for r in caplog.records)
    status, bad = await _access(hub, hub_env, 42)
    assert (status, bad["error"]["code"]) == (400, "bad_subject")


async def test_a_twin_is_scored_as_a_customer_across_its_products(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    eve = device.twin("eve@example.test")
    h = now_hlc(-60_000)
    device.publish(
        device.delta(
            1,
            {
                eve: [
                    (h, "coffee.churn_risk", 0.12),
                    (h + 1, "coffee.churn_model", "churn-coffee@1"),
                    (h + 2, "tv.churn_risk", 0.61),
                    (h + 3, "tv.churn_model", "churn-tv@1"),
                ]
            },
        )
    )
    await device.wait_acked({1})
    async with AsyncClient(hub.api_url, hub_env.brand, api_key=hub_env.token) as api:
        score = (await api.get_twin(eve)).scores.churn_risk
        assert score is not None
        assert (score.value, score.product, score.model) == (0.61, "tv", "churn-tv@1")
        other = device.twin("frank@example.test")
        device.publish(device.delta(2, {other: [(h, "coffee.brews_total", 1)]}))
        await device.wait_acked({2})
        plain = await api.get_twin(other)
    assert plain.scores.churn_risk is None  # no product scored them yet
