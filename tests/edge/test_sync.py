"""Outbox durability and the MQTT uplink against the real broker and a test acker."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from edge_agent import Agent
from protocol import HLC, Ack, ManualClock, Rejection, SigningKey
from twinsync.services import LocalServices

from .conftest import Acker, Bundle
from .test_pipeline import sig


async def _wait(cond, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_restart_continues_state_and_resends(
    bundle: Bundle, services: LocalServices, acker_factory
) -> None:
    port = services.mosquitto.port
    cfg = bundle.config(port)
    async with Agent(cfg) as agent:  # no acker yet: deltas stay in the outbox
        await agent.ingest_many([sig(i, "coffee.brew", 1) for i in range(1, 4)])
        await agent.flush()
        depth = agent.outbox_depth()
        assert depth >= 1
    db = sqlite3.connect(cfg.outbox.path)
    first_seqs = [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    db.close()
    assert first_seqs[0] > int(time.time() * 1000) * 1000 - 60_000_000  # time-derived start
    acker: Acker = acker_factory(bundle, port)
    async with Agent(cfg) as agent:
        results = await agent.ingest_many([sig(3, "coffee.brew", 1), sig(4, "coffee.brew", 1)])
        assert [r.status for r in results] == ["duplicate", "accepted"]
        assert await agent.drained(10)
    assert acker.seqs[: len(first_seqs)] == first_seqs  # resent oldest first
    assert acker.seqs == sorted(acker.seqs)
    assert len(set(acker.seqs)) == len(acker.seqs)
    totals = [op.value for _, op in acker.unique_ops()]
    assert totals == [1, 2, 3, 4]  # the counter continued across the restart
    hlcs = [HLC.unpack(op.hlc) for _, op in acker.unique_ops()]
    assert hlcs == sorted(hlcs)
    assert len(set(hlcs)) == 4


async def test_bad_acks_ignored_and_rejections_deleted(
    bundle: Bundle, services: LocalServices, acker_factory
) -> None:
    port = services.mosquitto.port
    forger: Acker = acker_factory(bundle, port, sign_with=SigningKey.generate())
    cfg = bundle.config(port, sync={"ack_timeout_s": 30})
    async with Agent(cfg) as agent:
        await agent.ingest_many([sig(1, "coffee.brew", 1)])
        await _wait(lambda: forger.seqs)
        await _wait(lambda: agent.stats["bad_acks"] >= 1)
        assert agent.outbox_depth() == 1  # a forged ack deletes nothing
        assert agent.stats["deltas_acked"] == 0
        forger.sign_with = bundle.hub_key
        forger.ack = False
        forger.send_ack(Ack(rejected=(Rejection(seq=forger.seqs[0], reason="schema"),), hub_ms=1))
        await _wait(lambda: agent.outbox_depth() == 0)
        assert agent.stats["deltas_rejected_by_hub"] == 1


async def test_outbox_bounds_drop_oldest(bundle: Bundle, services: LocalServices) -> None:
    clock = ManualClock(int(time.time() * 1000))
    cfg = bundle.config(
        services.mosquitto.port,
        outbox={"max_bytes": 64 * 1024, "max_age_s": 3600},
        sync={"max_ops_per_delta": 1},
    )
    async with Agent(cfg, clock=clock) as agent:
        now = clock.now_ms()
        await agent.ingest_many([sig(i, "coffee.brew", 1, ts=now) for i in range(1, 1501)])
        assert agent.stats["dropped"] > 0
        by_bytes = agent.stats["dropped"]
        assert agent.outbox_depth() == 1500 - by_bytes
        clock.advance(2 * 3600 * 1000)
        await agent.ingest(sig(2000, "coffee.brew", 1, ts=clock.now_ms()))
        await agent.flush()
        assert agent.outbox_depth() == 1
        assert agent.stats["dropped"] == 1500
    db = sqlite3.connect(cfg.outbox.path)
    assert db.execute("SELECT dropped FROM meta").fetchone()[0] == 1500
    db.close()


async def test_broker_restart_reconnects_and_resends(
    bundle: Bundle, own_services: LocalServices, acker_factory
) -> None:
    port = own_services.mosquitto.port
    cfg = bundle.config(port, sync={"reconnect_max_s": 1.0})
    async with Agent(cfg) as agent:
        await agent.ingest_many([sig(1, "coffee.brew", 1)])
        own_services.mosquitto.kill()
        await agent.ingest_many([sig(2, "coffee.brew", 1), sig(3, "coffee.brew", 1)])
        assert agent.outbox_depth() >= 1
        own_services.mosquitto.start()
        acker: Acker = acker_factory(bundle, port)
        assert await agent.drained(20)
    assert [op.value for _, op in acker.unique_ops()][-1] == 3
