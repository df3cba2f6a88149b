"""Consent entries in deltas get the ops' time window (real hub, mosquitto and influxd).

A consent entry at 2^47 - 1 ms is valid msgpack and passes the protocol, but no InfluxDB
can store it (ns timestamps are int64): before, the hub acked the delta and InfluxDB then
refused the point, so the entry was dropped after the ack. Now such a delta is refused
whole, with a reason the device sees in its ack; nothing of it is written; the hub keeps
working and InfluxDB sees no failed write.
"""

from __future__ import annotations

import time

from _fakes import FakeDevice, now_hlc
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub
from protocol import (
    CONSENT_TIME_LIMIT_MS,
    ConsentEntry,
    Delta,
    Op,
    TwinOps,
    packb,
)

DAY_MS = 86_400_000


def _delta(device: FakeDevice, seq: int, twin: str, consent_ms: int) -> bytes:
    ops = TwinOps(twin, (Op(now_hlc(), "coffee.brews_total", seq),))
    entry = ConsentEntry(twin, consent_ms, (("marketing", True),), "device", "v1")
    body = Delta(twins=(ops,), consent=(entry,))
    return device.envelope("delta", seq, packb(body.to_wire()))


async def test_consent_entries_outside_the_window_are_refused_whole(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    now = int(time.time() * 1000)
    limits = hub_env.config.limits
    cases = {
        1: CONSENT_TIME_LIMIT_MS - 1,  # year 6429: beyond what InfluxDB can store
        2: now + limits.max_future_ms + DAY_MS,
        3: now - limits.max_age_ms - DAY_MS,
    }
    twins = {seq: device.twin(f"clock-{seq}") for seq in cases}
    for seq, at in cases.items():
        device.publish(_delta(device, seq, twins[seq], at))
    await device.wait_acked(set(cases))
    assert device.rejected() == dict.fromkeys(cases, "consent_timestamp")
    assert not device.acked_seqs()
    assert hub.metrics.get("twinsync_hub_rejected_total", reason="consent_timestamp") == 3

    # The hub keeps working: a good entry (and the delta's op) is stored and acked.
    good = device.twin("clock-ok")
    device.publish(_delta(device, 4, good, now))
    await device.wait_acked({4})
    assert 4 in device.acked_seqs()
    query = 'SELECT * FROM "consent" GROUP BY "twin"'
    assert await eventually(lambda: bool(hub_env.influx(query)[0].get("series")), within=10)
    series = hub_env.influx(query)[0]["series"]
    assert [s["tags"]["twin"] for s in series] == [good]
    assert series[0]["values"][0][0] == now * 1_000_000

    # Nothing of a refused delta was half-written, and InfluxDB refused no write.
    stored = {twin for _dev, twin, *_rest in hub_env.points()}
    assert stored == {good}
    assert hub.metrics.get("twinsync_hub_write_errors_total") == 0
    assert hub.metrics.get("twinsync_hub_deltas_written_total") == 1
