"""Share alerts on a simulated fleet: a segment's share moving beyond its normal
variation alerts (with a metric and a log line), the same fleet without the move does
not, tiny segments never do; refusals are clear and only the brand's key reads.

The fleet is firmware_sim's (personas, and blended customers: ``blend_share`` 0.3, each
mixing a second persona in at 20-45 %). A device scores its customer's segment daily
as the shipped models would at best: the persona, or, for a blended customer, the
second persona with the probability of its weight, so blended customers move between
segments from day to day: the normal variation. The shift is the knob "commuters start
working from home": on the checked day 80 % of commuters score as homebodies.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from typing import Any

import pytest
from _fakes import FakeDevice, get_json
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import SCOPES, ApiKeys, ConfigError, Hub, load_hub_config, provision_devices
from cloud_hub.store import SegmentSizes, ShareRule, share_alerts
from firmware_sim import DAY_MS, PERSONAS, Fleet, FleetSpec, PopulationSpec
from protocol import HLC

MODEL = "segment-coffee@1"
BASELINE = 14
SEGMENT = {name: i for i, name in enumerate(sorted(PERSONAS))}
HOUR = 3_600_000


def _days(shift: float) -> list[dict[str, int]]:
    """Each day's segment per subject (BASELINE baseline days, then the checked day);
    on the checked day ``shift`` of the commuters score as homebodies."""
    fleet = Fleet.generate(
        FleetSpec(seed=11, devices=400, population=PopulationSpec(blend_share=0.3))
    )
    rng = random.Random(5)
    days = []
    for day in range(BASELINE + 1):
        scored = {}
        for c in fleet.customers:
            persona = c.blend if c.blend and rng.random() < c.blend_weight else c.persona
            if day == BASELINE and c.persona == "commuter" and rng.random() < shift:
                persona = "homebody"
            scored[c.subject] = SEGMENT[persona]
        days.append(scored)
    return days


async def _publish(device: FakeDevice, days: list[dict[str, int]], at_ms: int) -> None:
    """Each day's scoring an hour before that day's instant, as the agent writes it:
    a segment (and the model ref) only when it changed."""
    seq, last = 0, {}
    for day, scored in enumerate(days):
        ms = at_ms - (BASELINE - day) * DAY_MS - HOUR
        changed = [(s, v) for s, v in scored.items() if last.get(s) != v]
        for i in range(0, len(changed), 200):
            seq += 1
            ops = {}
            for j, (subject, segment) in enumerate(changed[i : i + 200]):
                h = HLC(ms + j, 0).pack()
                ops[device.twin(subject)] = [
                    (h, "coffee.segment", segment),
                    (h + 1, "coffee.segment_model", MODEL),
                ]
            device.publish(device.delta(seq, ops))
        last.update(scored)
    await device.wait_acked(set(range(1, seq + 1)))


def _url(hub: Hub, env: HubEnv, at_ms: int, extra: str = "") -> str:
    return (
        f"{hub.api_url}/v1/brands/{env.brand}/segments/alerts?product=coffee"
        f"&at={at_ms}&baseline={BASELINE}{extra}"
    )


async def test_a_segment_whose_share_moves_beyond_normal_variation_alerts(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    at = hub.clock.now_ms() - HOUR
    days = _days(shift=0.8)
    await _publish(device, days, at)
    with caplog.at_level(logging.WARNING, logger="cloud_hub.api"):
        body = await get_json(_url(hub, hub_env, at), token=hub_env.token)
    by_segment = {s["segment"]: s for s in body["segments"]}
    commuter, homebody = by_segment[SEGMENT["commuter"]], by_segment[SEGMENT["homebody"]]
    assert commuter["alert"], commuter
    assert commuter["z"] < -3
    assert commuter["why"].startswith("share shrank from ")
    assert homebody["alert"], homebody
    assert homebody["z"] > 3
    # The others moved only as much as blended customers move every day.
    others = [
        s
        for s in body["segments"]
        if s["segment"] not in (commuter["segment"], homebody["segment"])
    ]
    assert others
    assert not any(s["alert"] for s in others)
    assert body["alerts"] == 2
    assert body["rule"] == {"k": 3, "min_twins": 20, "min_shift": 0.02}
    # The shares are what the fleet says.
    now = days[-1]
    n = len(now)
    assert commuter["twins"] == sum(1 for v in now.values() if v == SEGMENT["commuter"])
    assert abs(commuter["share"] - commuter["twins"] / n) < 1e-6
    logged = [r.getMessage() for r in caplog.records if "segment share alert" in r.getMessage()]
    assert len(logged) == 2
    assert all("twin" not in line.replace("twins", "") for line in logged)  # no twin ids
    # A day before the shift, nothing alerts.
    calm = await get_json(_url(hub, hub_env, at - DAY_MS), token=hub_env.token)
    assert calm["alerts"] == 0
    # The scheduled check (the hub's own turn, run here at once) finds the same two,
    # sets the operators' gauge and logs them.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cloud_hub.segments"):
        assert await hub.share_watch.check() == {
            "coffee": 2,
            "thermostat": 0,
            "tv": 0,
            "wearable": 0,
        }
    assert hub.metrics.get("twinsync_hub_segment_share_alerts", product="coffee") == 2
    assert hub.metrics.get("twinsync_hub_segment_share_alerts", product="tv") == 0
    assert sum("segment share alert" in r.getMessage() for r in caplog.records) == 2


async def test_the_same_fleet_without_the_shift_raises_no_alert(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    at = hub.clock.now_ms() - HOUR
    await _publish(device, _days(shift=0.0), at)
    body = await get_json(_url(hub, hub_env, at), token=hub_env.token)
    assert body["alerts"] == 0
    assert (await hub.share_watch.check())["coffee"] == 0
    assert hub.metrics.get("twinsync_hub_segment_share_alerts", product="coffee") == 0
    assert len(body["segments"]) == len(SEGMENT)
    for s in body["segments"]:
        assert abs(s["z"]) <= 3, s
        assert s["why"].startswith("within normal variation"), s
    # A looser rule (k=2) is the caller's to ask for; the numbers stay the same.
    loose = await get_json(_url(hub, hub_env, at, "&k=2"), token=hub_env.token)
    assert [s["z"] for s in loose["segments"]] == [s["z"] for s in body["segments"]]


async def test_tiny_segments_and_short_histories_get_no_verdict(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """Five twins, one of whom moves: a 20 % swing, and still no alert (too small); a
    fleet scored for two days only: no verdict."""
    at = hub.clock.now_ms() - HOUR
    days = [{f"c{i}": 0 if i < 4 else 1 for i in range(5)} for _ in range(BASELINE)]
    days.append({f"c{i}": 0 if i < 3 else 1 for i in range(5)})
    await _publish(device, days, at)
    body = await get_json(_url(hub, hub_env, at), token=hub_env.token)
    assert body["alerts"] == 0
    assert all(s["why"] == "under 20 twins: too small to judge" for s in body["segments"])
    short = await get_json(
        _url(hub, hub_env, at - (BASELINE - 1) * DAY_MS).replace("&baseline=14", "&baseline=3"),
        token=hub_env.token,
    )
    assert all("no verdict" in s["why"] for s in short["segments"])


async def test_alert_refusals_are_clear_and_only_the_brands_key_reads(
    hub: Hub, hub_env: HubEnv, tmp_path: Any
) -> None:
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments/alerts"
    for query, code in [
        ("?product=toaster", "bad_product"),
        ("?product=coffee&baseline=2", "bad_baseline"),
        ("?product=coffee&baseline=91", "bad_baseline"),
        ("?product=coffee&baseline=99999999999999999999", "bad_baseline"),
        ("?product=coffee&k=1", "bad_k"),
        ("?product=coffee&k=3.5", "bad_k"),
        ("?product=coffee&at=1000", "bad_range"),
        ("?product=coffee&at=-5", "bad_at"),
        (f"?product=coffee&model={'m' * 101}", "bad_model"),
    ]:
        body = await get_json(base + query, 400, hub_env.token)
        assert body["error"]["code"] == code, query
    env = hub_env
    with env.state() as state:
        provision_devices(
            state,
            env.config.keys.secrets_dir,
            "zzother",
            [("o-1", "coffee")],
            tmp_path / "other",
            "127.0.0.1",
            env.services.mosquitto.port,
        )
        _k, other = ApiKeys(state).create("zzother", "x", SCOPES)
        _k, no_read = ApiKeys(state).create(env.brand, "x", ["privacy", "admin", "write"])
    device_password = (env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    url = f"{base}?product=coffee&at=1700000000000"
    for token, status, code in [
        (other, 403, "wrong_brand"),
        (device_password, 401, "bad_key"),
        (no_read, 403, "missing_scope"),
    ]:
        assert (await get_json(url, status, token))["error"]["code"] == code
    first = await get_json(url, token=env.token)
    assert first == await get_json(url, token=env.token)


def test_the_rule_is_the_documented_formula() -> None:
    """z = (share - mean) / sqrt(sd² + mean (1 - mean) / n), on a hand-made history; the
    verdict needs |z| > k, the minimum move and the minimum size, each said in words."""
    shares = [0.30, 0.32, 0.28, 0.31, 0.29]
    n = 1000
    a = [round(p * n) for p in shares] + [400]
    sizes = SegmentSizes(
        times_ms=list(range(6)),
        series=[
            {"model": MODEL, "segment": 0, "twins": a},
            {"model": MODEL, "segment": 1, "twins": [n - x for x in a]},
        ],
    )
    by = {s["segment"]: s for s in share_alerts(sizes, ShareRule())}
    mean, sd = statistics.fmean(shares), statistics.stdev(shares)
    sigma = math.sqrt(sd**2 + mean * (1 - mean) / n)
    assert by[0]["z"] == pytest.approx((0.4 - mean) / sigma, abs=1e-3)
    assert by[0]["alert"]
    assert by[0]["why"] == (
        f"share grew from {mean:.1%} to 40.0% ({(0.4 - mean) / sigma:+.1f} sigma of its "
        "normal variation)"
    )
    assert by[1]["alert"]
    assert by[1]["why"].startswith("share shrank")
    # The same move in a segment of 10 twins of 100: too small to judge.
    small = SegmentSizes(
        times_ms=list(range(6)),
        series=[
            {"model": MODEL, "segment": 0, "twins": [3, 3, 3, 3, 3, 10]},
            {"model": MODEL, "segment": 1, "twins": [97, 97, 97, 97, 97, 90]},
        ],
    )
    assert share_alerts(small, ShareRule())[0]["why"] == ("under 20 twins: too small to judge")
    # A huge fleet, a flat baseline, a real but tiny move: under the minimum move.
    flat = SegmentSizes(
        times_ms=list(range(6)),
        series=[
            {"model": MODEL, "segment": 0, "twins": [300_000] * 5 + [310_000]},
            {"model": MODEL, "segment": 1, "twins": [700_000] * 5 + [690_000]},
        ],
    )
    tiny = share_alerts(flat, ShareRule())[0]
    assert abs(tiny["z"]) > 3
    assert not tiny["alert"]
    assert tiny["why"].startswith("share moved 1.0%, under the 2.0% minimum")


async def test_the_scheduled_check_runs_on_its_own(hub_env: HubEnv) -> None:
    """``segments.share_check_s``: the hub checks by itself, every turn, and sets the
    gauge an operator alerts on."""
    env = hub_env
    fast = env.config.model_copy(
        update={"segments": env.config.segments.model_copy(update={"share_check_s": 0.2})}
    )
    async with Hub(fast) as hub:
        await hub.ready.wait()
        device = FakeDevice(
            env.bundles["dev-0"].parent, env.brand, "dev-0", env.services.mosquitto.port
        )
        try:
            await _publish(device, _days(shift=0.8), hub.clock.now_ms() - HOUR)
        finally:
            device.close()

        def alerted() -> bool:
            return hub.metrics.get("twinsync_hub_segment_share_alerts", product="coffee") == 2

        assert await eventually(alerted, within=60)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"share_check_s": -1}, "share_check_s"),
        ({"share_check_s": 100_000}, "share_check_s"),
        ({"share_baseline_days": 2}, "share_baseline_days"),
        ({"share_k": 1}, "share_k"),
        ({"share_every": 5}, "share_every"),
    ],
)
def test_bad_share_check_settings_are_refused_at_start_up(
    segments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_hub_config(None, {"segments": segments}, environ={})
