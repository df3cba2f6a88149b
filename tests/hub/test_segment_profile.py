"""Segment profiles from the twin query index: sizes, the standardised mean difference
of each feature against the model's population, sentences in words; small segments get
no profile; erased twins leave it; refusals are clear and change nothing."""

from __future__ import annotations

import math
import statistics
from typing import Any

from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from hub_env import HubEnv, both_stores

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.store import FEATURE_WORDS
from protocol import PRODUCTS, feature_names

M1, M2 = "segment-coffee@1", "segment-coffee@2"


def _fleet() -> list[tuple[str, str, int, float, float]]:
    """(subject, model, segment, share_weekend, cups_per_day): under model 1, segment 0
    brews on weekends, segment 1 on weekdays and more, segment 2 is three twins; model
    2's twins are a population of their own."""
    fleet = []
    for i in range(20):
        fleet.append((f"wk{i}", M1, 0, 0.55 + 0.01 * (i % 5), 1.0 + 0.1 * (i % 3)))
        fleet.append((f"wd{i}", M1, 1, 0.15 + 0.01 * (i % 5), 3.0 + 0.1 * (i % 3)))
    for i in range(3):
        fleet.append((f"few{i}", M1, 2, 0.4, 2.0))
    for i in range(12):
        fleet.append((f"new{i}", M2, 7, 0.3, 2.0 + 0.1 * (i % 2)))
    return fleet


async def _publish(device: FakeDevice, fleet: list[tuple[str, str, int, float, float]]) -> None:
    h = now_hlc(-600_000)
    for seq, (subject, model, segment, weekend, cups) in enumerate(fleet, 1):
        ops = [
            (h, "coffee.segment", segment),
            (h + 1, "coffee.segment_model", model),
            (h + 2, "coffee.f_share_weekend", weekend),
            (h + 3, "coffee.f_habit_cups_per_day", cups),
            (h + 4, "coffee.f_recency_h", 5.0),
        ]
        device.publish(device.delta(seq, {device.twin(subject): ops}))
    await device.wait_acked(set(range(1, len(fleet) + 1)))


def _smd(fleet: list[Any], model: str, segment: int, column: int, floor: float) -> float:
    population = [row[column] for row in fleet if row[1] == model]
    mine = [row[column] for row in fleet if row[1] == model and row[2] == segment]
    spread = max(statistics.pstdev(population), floor)
    return (statistics.fmean(mine) - statistics.fmean(population)) / spread


@both_stores
async def test_profiles_say_which_features_set_each_segment_apart(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    fleet = _fleet()
    await _publish(device, fleet)
    url = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments/profile?product=coffee"

    async def indexed() -> bool:
        body = await get_json(url, token=hub_env.token)
        return sum(m["twins"] for m in body["models"]) == len(fleet)

    assert await eventually(indexed, within=30)
    body = await get_json(url, token=hub_env.token)
    assert (body["min_smd"], body["min_twins"]) == (0.2, 10)
    models = {m["model"]: m for m in body["models"]}
    assert set(models) == {M1, M2}
    assert models[M1]["twins"] == 43
    segments = {s["segment"]: s for s in models[M1]["segments"]}
    assert {k: s["twins"] for k, s in segments.items()} == {0: 20, 1: 20, 2: 3}
    assert math.isclose(segments[0]["share"], 20 / 43, rel_tol=1e-5)

    weekend = {f["feature"]: f for f in segments[0]["features"]}
    assert set(list(weekend)[:2]) == {"share_weekend", "habit_cups_per_day"}
    got = weekend["share_weekend"]
    assert math.isclose(got["smd"], _smd(fleet, M1, 0, 3, 0.05), abs_tol=1e-3)
    assert got["smd"] > 0
    assert weekend["habit_cups_per_day"]["smd"] < 0
    population = statistics.fmean(r[3] for r in fleet if r[1] == M1)
    ratio = statistics.fmean(r[3] for r in fleet if r[2] == 0) / population
    assert math.isclose(got["ratio"], ratio, rel_tol=1e-3)
    assert got["text"] == (
        f"{ratio:.1f}x the average share of brews on weekends (0.57 vs {population:.2f})"
    )
    assert "less cups a day than average" in weekend["habit_cups_per_day"]["text"]
    # A feature every twin has alike sets no segment apart.
    assert "recency_h" not in weekend
    assert segments[0]["summary"].startswith("segment 0: 20 twins (47%): ")
    weekday = {f["feature"]: f for f in segments[1]["features"]}
    assert weekday["share_weekend"]["smd"] < 0
    assert "x less share of brews on weekends than average" in weekday["share_weekend"]["text"]
    # Three twins: their size, no profile.
    assert segments[2]["features"] == []
    assert "under 10 twins: no profile" in segments[2]["summary"]
    # Model 2 is its own population (one segment: nothing sets it apart from itself).
    (only,) = models[M2]["segments"]
    assert (only["segment"], only["twins"], only["share"], only["features"]) == (7, 12, 1.0, [])

    one = await get_json(f"{url}&model={M2}&top=1", token=hub_env.token)
    assert [m["model"] for m in one["models"]] == [M2]
    top1 = await get_json(f"{url}&model={M1}&top=1", token=hub_env.token)
    assert all(len(s["features"]) <= 1 for s in top1["models"][0]["segments"])
    assert (await get_json(f"{url}&model=nope@1", token=hub_env.token))["models"] == []

    # An erased twin leaves the profile with the index.
    status, _ = await send_json(
        "POST",
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/erasure",
        {"subject": "wk0"},
        hub_env.token,
    )
    assert status == 200
    after = await get_json(f"{url}&model={M1}", token=hub_env.token)
    assert {s["segment"]: s["twins"] for s in after["models"][0]["segments"]}[0] == 19


async def test_profile_refusals_are_clear_and_only_the_brands_key_reads(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, tmp_path: Any
) -> None:
    await _publish(device, _fleet()[:12])
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments/profile"
    for query, code in [
        ("?product=toaster", "bad_product"),
        ("", "bad_product"),
        ("?product=coffee&top=0", "bad_top"),
        ("?product=coffee&top=21", "bad_top"),
        ("?product=coffee&top=99999999999999999999", "bad_top"),
        (f"?product=coffee&model={'m' * 101}", "bad_model"),
        ("?product=coffee&model=%00", "bad_model"),
    ]:
        body = await get_json(base + query, 400, hub_env.token)
        assert body["error"]["code"] == code, query
    # SQL in the model ref is data: no model has that name.
    for hostile in ("x' OR '1'='1", "x%27%20OR%201%3D1%20--", "%25"):
        body = await get_json(f"{base}?product=coffee&model={hostile}", token=hub_env.token)
        assert body["models"] == [], hostile
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
    url = f"{base}?product=coffee"
    for token, status, code in [
        (other, 403, "wrong_brand"),
        (device_password, 401, "bad_key"),
        (no_read, 403, "missing_scope"),
    ]:
        assert (await get_json(url, status, token))["error"]["code"] == code
    first = await get_json(url, token=env.token)
    assert first == await get_json(url, token=env.token)  # a replay: the same answer
    theirs = await get_json(
        f"{hub.api_url}/v1/brands/zzother/segments/profile?product=coffee", token=other
    )
    assert theirs["models"] == []


def test_every_feature_of_every_product_has_words() -> None:
    """A feature the schema gains without a phrase would be profiled by its bare name."""
    named = {n for p in PRODUCTS for n in feature_names(p)}
    assert named <= set(FEATURE_WORDS)
    assert all(kind in ("ratio", "level") for _phrase, kind in FEATURE_WORDS.values())


async def test_an_instance_without_the_index_says_profiles_need_it(hub_env: HubEnv) -> None:
    """``index.enabled = false``: 503 index_disabled, saying what to do; the sizes, read
    from InfluxDB, are still served."""
    env = hub_env
    off = env.config.model_copy(
        update={"index": env.config.index.model_copy(update={"enabled": False})}
    )
    async with Hub(off) as hub:
        await hub.ready.wait()
        base = f"{hub.api_url}/v1/brands/{env.brand}/segments"
        body = await get_json(f"{base}/profile?product=coffee", 503, env.token)
        assert body["error"]["code"] == "index_disabled"
        assert "ask an instance that keeps it" in body["error"]["message"]
        assert (await get_json(f"{base}/sizes?product=coffee", token=env.token))["series"] == []
