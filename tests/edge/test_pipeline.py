"""Signal processing rules: duplicates, validation reasons, gauge dedup, counters, privacy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from edge_agent import Agent, IngestResult
from protocol import HLC, SignalIn, SystemClock, pseudonymize
from twinsync.services import LocalServices

from .conftest import Acker, Bundle

SUBJECT = "Ann.Customer@example.com"


def sig(seq: int, name: str, value: object, ts: int | None = None) -> SignalIn:
    return SignalIn(
        seq=seq,
        ts=ts if ts is not None else int(time.time() * 1000),
        subject=SUBJECT,
        name=name,
        value=value,  # type: ignore[arg-type]
    )


async def test_validation_reasons_and_duplicates(bundle: Bundle, services: LocalServices) -> None:
    cfg = bundle.config(services.mosquitto.port)
    async with Agent(cfg, clock=SystemClock()) as agent:
        rs = await agent.ingest_many(
            [
                sig(1, "coffee.nope", 1),
                sig(2, "coffee.strength", "strong"),
                sig(3, "coffee.water_level_pct", float("nan")),
                sig(4, "coffee.strength", 9),
                sig(5, "coffee.strength", 3, ts=0),
                sig(6, "coffee.strength", 3, ts=4_102_444_800_000),  # year 2100
                sig(7, "thermostat.mode", "sauna"),
                sig(8, "coffee.strength", 3),
                sig(8, "coffee.strength", 4),
                sig(2, "coffee.strength", 4),
            ]
        )
        assert rs == [
            IngestResult(1, "rejected", "unknown_signal"),
            IngestResult(2, "rejected", "wrong_type"),
            IngestResult(3, "rejected", "not_finite"),
            IngestResult(4, "rejected", "out_of_range"),
            IngestResult(5, "rejected", "timestamp"),
            IngestResult(6, "rejected", "timestamp"),
            IngestResult(7, "rejected", "bad_choice"),
            IngestResult(8, "accepted", None),
            IngestResult(8, "duplicate", None),
            IngestResult(2, "duplicate", None),
        ]
        assert agent.stats["rejected"] == 7
        assert agent.stats["duplicate"] == 2
        assert agent.stats["accepted"] == 1
        assert agent.stats["ops"] == 1
        assert agent.rejected_by_reason["timestamp"] == 2


async def test_gauge_dedup_counter_totals_and_hlc(
    bundle: Bundle, services: LocalServices, acker_factory
) -> None:
    acker: Acker = acker_factory(bundle, services.mosquitto.port)
    cfg = bundle.config(services.mosquitto.port)
    now = int(time.time() * 1000)
    async with Agent(cfg) as agent:
        rs = await agent.ingest_many(
            [
                sig(1, "coffee.water_level_pct", 50, ts=now),
                sig(2, "coffee.water_level_pct", 50.0, ts=now),  # same value: no op
                sig(3, "coffee.water_level_pct", 40, ts=now - 5),  # clock may not go back
                sig(4, "coffee.brew", 2, ts=now + 1),
                sig(5, "coffee.brew", 3, ts=now + 2),
                sig(6, "coffee.descale_due", True, ts=now + 3),
                sig(7, "coffee.descale_due", True, ts=now + 4),
            ]
        )
        assert [r.status for r in rs] == ["accepted"] * 7
        assert agent.stats["ops"] == 5
        assert await agent.drained(10)
        assert agent.outbox_depth() == 0
    twin = pseudonymize(bundle.brand_key, 1, SUBJECT)
    ops = acker.unique_ops()
    assert {t for t, _ in ops} == {twin}
    got = [(HLC.unpack(op.hlc), op.field, op.value) for _, op in ops]
    assert got == [
        (HLC(now, 0), "coffee.water_level_pct", 50.0),
        (HLC(now, 2), "coffee.water_level_pct", 40.0),  # seq 2 advanced the HLC too
        (HLC(now + 1, 0), "coffee.brews_total", 2),
        (HLC(now + 2, 0), "coffee.brews_total", 5),
        (HLC(now + 3, 0), "coffee.descale_due", True),
    ]
    assert isinstance(got[3][2], int)


async def test_float_counter_sums_in_order(bundle: Bundle, services: LocalServices) -> None:
    b = bundle
    cfg = b.config(services.mosquitto.port)
    cfg = cfg.model_copy(update={"device": cfg.device.model_copy(update={"product": "tv"})})
    async with Agent(cfg) as agent:
        await agent.ingest_many([sig(i, "tv.watch", v) for i, v in enumerate([0.1, 0.2, 3], 1)])
        twin = pseudonymize(b.brand_key, 1, SUBJECT)
        assert agent.twin_value(twin, "tv.watch_minutes_total") == 0.1 + 0.2 + 3


async def test_raw_subject_never_stored_logged_or_sent(
    bundle: Bundle, services: LocalServices, acker_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    acker: Acker = acker_factory(bundle, services.mosquitto.port)
    cfg = bundle.config(services.mosquitto.port)
    async with Agent(cfg) as agent:
        await agent.ingest_many([sig(i, "coffee.brew", 1) for i in range(1, 20)])
        await agent.ingest(sig(20, "coffee.nope", 1))
        assert await agent.drained(10)
    raw = SUBJECT.encode()
    lowered = SUBJECT.lower().encode()
    for path in cfg.outbox.path.parent.iterdir():
        data = path.read_bytes()
        assert raw not in data, path
        assert lowered not in data, path
    assert SUBJECT.lower() not in caplog.text.lower()
    assert acker.payloads
    for payload in acker.payloads:
        assert raw not in payload
        assert lowered not in payload


async def test_unshared_fields_stay_on_the_device(
    bundle: Bundle, services: LocalServices, acker_factory: Callable[..., Acker]
) -> None:
    """Data minimisation: heart-rate readings are kept for the device's own view and its
    models but never sent; a deployment can keep more fields local."""
    ack = acker_factory(bundle, services.mosquitto.port)
    cfg = bundle.config(services.mosquitto.port, minimise={"keep_local": ["wearable.steps_total"]})
    async with Agent(cfg) as agent:
        results = await agent.ingest_many(
            [
                sig(1, "wearable.heart_rate_bpm", 61),
                sig(2, "wearable.steps", 500),
                sig(3, "wearable.sleep", 420),
            ]
        )
        assert [r.status for r in results] == ["accepted"] * 3
        assert await agent.drained(10)
        assert agent._book is not None
        twin = agent._book.twin_of(SUBJECT)
        assert agent.twin_value(twin, "wearable.heart_rate_bpm") == 61  # kept locally
        assert agent.twin_value(twin, "wearable.steps_total") == 500
    sent = {op.field for _twin, op in ack.ops}
    assert sent == {"wearable.sleep_minutes_total"}
