"""The scale sections of ``twinsync bench`` at a handful of devices: each runs end to end
against real mosquitto (secured as deployed), influxd and hub processes, and what it
measures is checked for correctness (every delta acked and stored once, nothing lost),
never for speed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import (
    PROBE,
    Swarm,
    drain,
    latency,
    scale_out,
    seal_costs,
    stored_ops,
    swarm_sizes,
    throughput,
)
from twinsync.services import LocalServices

DEVICES = 6


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory, services: LocalServices) -> Iterator[Swarm]:
    with Swarm(
        tmp_path_factory.mktemp("swarm"), services, DEVICES, extra=[(PROBE, "thermostat")]
    ) as s:
        yield s
        s.stop_hubs()


def test_swarm_devices_each_connect_with_their_own_account_and_every_delta_is_stored_once(
    swarm: Swarm,
) -> None:
    runs = swarm_sizes(swarm, [DEVICES], rates=[60.0], seconds=1.0, ops=3, procs=2)
    (run,) = runs[DEVICES]
    assert run.connected == DEVICES
    assert run.deltas == 60
    assert run.values == 180
    # The hub wrote each delta once and refused nothing: no resends, no replays.
    assert run.hub_deltas == run.deltas
    assert run.hub_values == run.values
    assert run.hub_rejected == 0
    assert run.resent == run.rejected == run.bad_acks == 0
    assert run.usage.cpu["hub"] > 0
    assert run.broker_rss > 0


def test_latency_probe_reads_every_signal_back_through_the_api(swarm: Swarm) -> None:
    rows = latency(swarm, devices=DEVICES, max_rate=40.0, shares=(0.5,), ops=2, samples=3, procs=1)
    (row,) = rows
    assert row["samples"] == 3
    # Each stage took time, and the end to end is their sum's order (no sample lost).
    assert 0 < row["system_p50_ms"] <= row["total_p50_ms"]
    assert 0 < row["agent_p50_ms"] <= row["total_p50_ms"]
    assert row["generator_resent"] == 0


def test_backlog_drain_stores_every_value_it_was_sent(swarm: Swarm) -> None:
    result = drain(swarm, devices=DEVICES, hours=0.5, interval_s=60, ops=2, procs=2)
    assert result["deltas"] == DEVICES * 30
    assert result["values"] == DEVICES * 60
    assert result["stored_values"] == result["values"]
    assert result["devices_missing_values"] == 0
    assert result["sampled_devices_checked"] == 3
    assert result["sampled_devices_mismatched"] == []
    assert sum(stored_ops(swarm, "swarm_drain").values()) == result["values"]
    assert result["hub_rss_hwm"] > 0


def test_scale_out_two_hubs_share_the_work_and_store_each_delta_once(swarm: Swarm) -> None:
    one, two = scale_out(swarm, devices=DEVICES, total=120, ops=2, procs=1)
    assert (one.hubs, two.hubs) == (1, 2)
    for run in (one, two):
        assert run.deltas == 120
        assert run.hub_deltas == run.deltas
        assert run.hub_rejected == 0


async def test_hub_and_flow_reference_store_every_delta(
    tmp_path: Path, services: LocalServices
) -> None:
    rows = await throughput(
        tmp_path,
        services.mosquitto.port,
        services.influxd.hub_settings("smoke"),
        deltas=60,
        devices=4,
        ops_list=(2,),
    )
    (row,) = rows
    assert row["flow"]["messages"] == 60
    assert row["flow"]["lines"] == 120
    assert row["flow"]["broker_drain_per_s"] > 0
    assert row["plain"]["deltas_per_s"] > 0
    assert row["sealed"]["deltas_per_s"] > 0
    assert row["sealed"]["bytes"] > row["plain"]["bytes"]


def test_seal_costs_cover_both_sides_of_a_sealed_delta() -> None:
    for row in seal_costs(n=20):
        assert row["sealed_bytes"] > row["plain_bytes"]
        assert all(row[k] > 0 for k in ("seal_us", "sign_us", "verify_us", "open_us"))
