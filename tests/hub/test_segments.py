"""Segment changes as queryable events: first segment, changes, no event for a repeat."""

from __future__ import annotations

from _fakes import FakeDevice, get_json, now_hlc
from hub_env import HubEnv

from cloud_hub import Hub
from protocol import HLC


async def test_segment_changes_are_events_with_their_model(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    ann, bob = device.twin("ann"), device.twin("bob")
    h0 = now_hlc(-3_600_000)
    ms = HLC.unpack(h0).ms
    device.publish(
        device.delta(
            1,
            {
                ann: [
                    (h0, "coffee.segment", 2),
                    (h0 + 1, "coffee.segment_model", "segment-coffee@1"),
                ],
                bob: [
                    (h0 + 2, "coffee.segment", 0),
                    (h0 + 3, "coffee.segment_model", "segment-coffee@1"),
                ],
            },
        )
    )
    later = HLC(ms + 600_000, 0).pack()
    device.publish(device.delta(2, {ann: [(later, "coffee.segment", 2)]}))  # no change
    last = HLC(ms + 1_200_000, 0).pack()
    device.publish(
        device.delta(
            3,
            {
                ann: [
                    (last, "coffee.segment", 4),
                    (last + 1, "coffee.segment_model", "segment-coffee@2"),
                ]
            },
        )
    )
    await device.wait_acked({1, 2, 3})
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments/changes"
    body = await get_json(f"{base}?product=coffee", token=hub_env.token)
    got = [(e["twin"], e["time_ms"], e["from"], e["to"], e["model"]) for e in body["changes"]]
    assert got == sorted(
        [
            (ann, ms, None, 2, "segment-coffee@1"),
            (bob, ms, None, 0, "segment-coffee@1"),
            (ann, ms + 1_200_000, 2, 4, "segment-coffee@2"),
        ],
        key=lambda e: (e[1], e[0]),
    )
    # A range starting after the first change knows where the segment came from.
    after = await get_json(f"{base}?product=coffee&start={ms + 1}", token=hub_env.token)
    assert [(e["from"], e["to"]) for e in after["changes"]] == [(2, 4)]
    bad = await get_json(f"{base}?product=toaster", status=400, token=hub_env.token)
    assert bad["error"]["code"] == "bad_product"
    assert (await get_json(f"{base}?product=tv", token=hub_env.token))["changes"] == []
