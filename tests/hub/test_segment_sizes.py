"""Segment sizes over time and the migration matrix, from the stored segment history:
point in time, per model version, erased twins gone; every refusal bounded and clear."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
from _fakes import FakeDevice, get_json, now_hlc, send_json
from hub_env import HubEnv

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from protocol import HLC

MIN = 60_000
M1, M2 = "segment-coffee@1", "segment-coffee@2"


async def _history(device: FakeDevice) -> tuple[int, str, str, str]:
    """ann: segment 2 (model 1) at t, then 4 (model 2) at t + 20 min; bob: 0 at t;
    cy: 1 at t + 10 min. Returns (t, ann, bob, cy)."""
    ann, bob, cy = device.twin("Ann.Example@Mail.test"), device.twin("bob"), device.twin("cy")
    h0 = now_hlc(-3_600_000)
    t = HLC.unpack(h0).ms

    def at(ms: int) -> int:
        return HLC(ms, 0).pack()

    device.publish(
        device.delta(
            1,
            {
                ann: [(h0, "coffee.segment", 2), (h0 + 1, "coffee.segment_model", M1)],
                bob: [(h0 + 2, "coffee.segment", 0), (h0 + 3, "coffee.segment_model", M1)],
            },
        )
    )
    device.publish(
        device.delta(
            2,
            {
                cy: [
                    (at(t + 10 * MIN), "coffee.segment", 1),
                    (at(t + 10 * MIN) + 1, "coffee.segment_model", M1),
                ],
                # a re-score into the same segment changes nothing
                bob: [(at(t + 11 * MIN), "coffee.segment", 0)],
            },
        )
    )
    device.publish(
        device.delta(
            3,
            {
                ann: [
                    (at(t + 20 * MIN), "coffee.segment", 4),
                    (at(t + 20 * MIN) + 1, "coffee.segment_model", M2),
                ]
            },
        )
    )
    await device.wait_acked({1, 2, 3})
    return t, ann, bob, cy


def _series(body: dict[str, Any]) -> dict[tuple[str | None, int], list[int]]:
    return {(s["model"], s["segment"]): s["twins"] for s in body["series"]}


async def test_sizes_count_each_twin_where_it_was_at_each_step(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    t, ann, _bob, _cy = await _history(device)
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments"
    # instants t-5m, t+5m, t+15m, t+25m: between the writes, so each is unambiguous
    query = f"product=coffee&start={t - 5 * MIN}&end={t + 30 * MIN}&step=10m"
    body = await get_json(f"{base}/sizes?{query}", token=hub_env.token)
    assert body["times_ms"] == [t - 5 * MIN, t + 5 * MIN, t + 15 * MIN, t + 25 * MIN]
    assert _series(body) == {
        (M1, 0): [0, 1, 1, 1],
        (M1, 1): [0, 0, 1, 1],
        (M1, 2): [0, 1, 1, 0],
        (M2, 4): [0, 0, 0, 1],
    }
    assert body["totals"] == [0, 2, 3, 3]
    # One model version only: ann's move to model 2 leaves model 1's population.
    one = await get_json(f"{base}/sizes?{query}&model={M1}", token=hub_env.token)
    assert set(_series(one)) == {(M1, 0), (M1, 1), (M1, 2)}
    assert one["totals"] == [0, 2, 3, 2]
    assert (await get_json(f"{base}/sizes?{query}&model=nope@9", token=hub_env.token))[
        "series"
    ] == []
    # A range starting after the history began knows where each twin already was.
    late = await get_json(
        f"{base}/sizes?product=coffee&start={t + 25 * MIN}&end={t + 26 * MIN}&step=1h",
        token=hub_env.token,
    )
    assert _series(late) == {(M1, 0): [1], (M1, 1): [1], (M2, 4): [1]}

    # The migration matrix between two instants.
    mig = await get_json(
        f"{base}/migration?product=coffee&from={t + 5 * MIN}&to={t + 25 * MIN}",
        token=hub_env.token,
    )
    cells = {(c["from"], c["to"]): c["twins"] for c in mig["cells"]}
    assert cells == {(2, 4): 1, (0, 0): 1, (None, 1): 1}
    assert (mig["entered"], mig["left"], mig["moved"], mig["stayed"]) == (1, 0, 1, 1)
    assert mig["sizes_from"] == {"0": 1, "2": 1}
    assert mig["sizes_to"] == {"0": 1, "1": 1, "4": 1}

    # An erased twin is gone from every past size and from the matrix.
    status, _receipt = await send_json(
        "POST",
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/erasure",
        {"subject": "Ann.Example@Mail.test"},
        hub_env.token,
    )
    assert status == 200
    after = await get_json(f"{base}/sizes?{query}", token=hub_env.token)
    assert _series(after) == {(M1, 0): [0, 1, 1, 1], (M1, 1): [0, 0, 1, 1]}
    mig = await get_json(
        f"{base}/migration?product=coffee&from={t + 5 * MIN}&to={t + 25 * MIN}",
        token=hub_env.token,
    )
    assert ann not in str(mig)
    assert {(c["from"], c["to"]) for c in mig["cells"]} == {(0, 0), (None, 1)}


async def test_bad_and_hostile_requests_are_refused_saying_what_to_change(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    t, *_ = await _history(device)
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments"
    before = await get_json(f"{base}/sizes?product=coffee&start={t - MIN}", token=hub_env.token)
    cases = [
        ("sizes?product=toaster", "bad_product"),
        ("sizes?product=", "bad_product"),
        ("sizes?product=coffee&step=1week", "bad_step"),
        ("sizes?product=coffee&step=0m", "bad_step"),
        ("sizes?product=coffee&step=%EF%BC%91d", "bad_step"),
        # the longest range at the finest step: refused before anything is read
        ("sizes?product=coffee&start=0&end=9000000000000&step=1ms", "too_many_steps"),
        ("sizes?product=coffee&start=0&end=9000000000000&step=1d", "too_many_steps"),
        (f"sizes?product=coffee&start={t}&end={t}", "bad_range"),
        ("sizes?product=coffee&start=99999999999999999999", "bad_start"),
        (f"sizes?product=coffee&model={'x' * 101}", "bad_model"),
        ("migration?product=tv&from=5&to=5", "bad_range"),
        ("migration?product=coffee&from=-1", "bad_from"),
        ("migration?product=coffee&to=1e9", "bad_to"),
        ("migration?product=kettle", "bad_product"),
    ]
    for query, code in cases:
        body = await get_json(f"{base}/{query}", status=400, token=hub_env.token)
        assert body["error"]["code"] == code, query
        assert body["error"]["message"]
    big = await get_json(
        f"{base}/sizes?product=coffee&start=0&end=9000000000000&step=1d", 400, hub_env.token
    )
    assert "use step=" in big["error"]["message"]
    # The largest allowed request is answered, and nothing changed.
    wide = await get_json(
        f"{base}/sizes?product=coffee&start=0&end=8640000000000&step=8640000000ms",
        token=hub_env.token,
    )
    assert len(wide["times_ms"]) == 1000
    assert wide["totals"][-1] == 3
    again = await get_json(f"{base}/sizes?product=coffee&start={t - MIN}", token=hub_env.token)
    assert again["series"] == before["series"]
    assert hub.metrics.get("twinsync_hub_api_refused_total", status="400") >= len(cases)


async def test_only_the_brands_own_read_key_may_read_segments(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, tmp_path: Any
) -> None:
    """Another brand's key (403 wrong_brand) sees nothing of this brand's segments, a
    device's broker password or a made-up key is 401, a key without ``read`` is 403; a
    replayed request gets the same answer and changes nothing."""
    t, *_ = await _history(device)
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
        keys = ApiKeys(state)
        _k, other = keys.create("zzother", "x", SCOPES)
        _k, no_read = keys.create(env.brand, "x", ["privacy", "admin", "write"])
    device_password = (env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    base = f"{hub.api_url}/v1/brands/{env.brand}/segments"
    urls = [
        f"{base}/sizes?product=coffee&start={t - MIN}&end={t + 30 * MIN}",
        f"{base}/migration?product=coffee&from={t - MIN}&to={t + 30 * MIN}",
    ]
    cases = [
        (other, 403, "wrong_brand"),
        (device_password, 401, "bad_key"),
        ("tsk_" + "0" * 12 + "_" + "0" * 43, 401, "bad_key"),
        (no_read, 403, "missing_scope"),
    ]
    for url in urls:
        for token, status, code in cases:
            body = await get_json(url, status, token)
            assert body["error"]["code"] == code, (url, code)
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 401
        first = await get_json(url, token=env.token)
        assert first == await get_json(url, token=env.token)
    # The other brand's own view is empty: nothing of this brand leaks through it.
    theirs = await get_json(
        f"{hub.api_url}/v1/brands/zzother/segments/sizes?product=coffee&start={t - MIN}",
        token=other,
    )
    assert theirs["series"] == []
    assert set(theirs["totals"]) == {0}


async def test_sizes_agree_with_influxdbs_own_last_value_at_every_instant(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """Random histories (changes at any ms, repeats, re-scores, two model versions):
    at every instant, the sizes' counts per segment (summed over models) are what
    InfluxDB's ``last()`` at or before that instant says, as the migration route reads
    it: two independent ways to the same point-in-time answer."""
    rng = random.Random(3)
    t0 = HLC.unpack(now_hlc(-6 * 3_600_000)).ms
    seq = 0
    for i in range(30):
        twin = device.twin(f"r{i}")
        ops = []
        at = t0 + rng.randrange(3_600_000)
        for _ in range(rng.randrange(1, 6)):
            h = HLC(at, 0).pack()
            ops += [
                (h, "coffee.segment", rng.randrange(4)),
                (h + 1, "coffee.segment_model", rng.choice((M1, M2))),
            ]
            at += rng.randrange(1, 80 * MIN)
        seq += 1
        device.publish(device.delta(seq, {twin: ops}))
    await device.wait_acked(set(range(1, seq + 1)))
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments"
    start, step, steps = t0 + 7 * MIN, 37 * MIN, 9
    body = await get_json(
        f"{base}/sizes?product=coffee&start={start}&end={start + steps * step}&step=37m",
        token=hub_env.token,
    )
    assert len(body["times_ms"]) == steps
    assert body["totals"][-1] == 30  # every twin had its first segment within the hour
    assert len({tuple(s["twins"]) for s in body["series"]}) > 2  # sizes did move
    for i, instant in enumerate(body["times_ms"]):
        counted: dict[str, int] = {}
        for s in body["series"]:
            if s["twins"][i]:
                key = str(s["segment"])
                counted[key] = counted.get(key, 0) + s["twins"][i]
        mig = await get_json(
            f"{base}/migration?product=coffee&from={instant - 1}&to={instant}",
            token=hub_env.token,
        )
        assert counted == mig["sizes_to"], (i, instant)
        assert body["totals"][i] == sum(mig["sizes_to"].values())
