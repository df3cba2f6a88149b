"""Retention per field class on the real influxd: a sweep deletes the points of a class
older than its limit and nothing else; instances share the turn; the policy ceiling is
created; bad durations are refused at start-up."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _poll import eventually
from hub_env import HubEnv, both_stores, make_config

from cloud_hub import ConfigError, Hub, Metrics, StoreError, load_hub_config
from cloud_hub.privacy import RetentionSweeper
from cloud_hub.store import InfluxStore, StateStore, TwinIndex, open_state_store, twin_lines
from protocol import HLC, Op, SystemClock, TwinOps, pseudonymize

DAY_MS = 86_400_000


def _hlc(ms: int) -> int:
    return HLC(ms, 0).pack()


def _seed(env: HubEnv, twin: str, other: str) -> None:
    """Old (10 days) and recent (1 hour) points of a usage and a profile field."""
    now = int(time.time() * 1000)
    old, recent = _hlc(now - 10 * DAY_MS), _hlc(now - 3_600_000)
    lines: list[str] = []
    for t in (twin, other):
        ops = (
            Op(old, "coffee.brews_total", 3),
            Op(old, "coffee.segment", 1),
            Op(recent, "coffee.brews_total", 4),
            Op(recent, "coffee.segment", 2),
        )
        twin_lines(env.brand, "dev-0", (TwinOps(t, ops),), lines)
    env.write(lines)


async def test_sweep_deletes_old_points_of_the_limited_class_only(
    tmp_path: Path, hub_env: HubEnv
) -> None:
    env = hub_env
    env.config = make_config(
        tmp_path,
        env.services,
        env.config.influx.database,
        env.brand,
        retention={"usage": "30d", "profile": "2d", "sweep_s": 3600},
    )
    key = (tmp_path / "secrets" / "brands" / env.brand / "1.key").read_bytes()
    ann, bob = pseudonymize(key, 1, "ann"), pseudonymize(key, 1, "bob")
    _seed(env, ann, bob)
    assert len(env.points()) == 8
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        # The first sweep runs once the database is prepared; it reports when it is done
        # (its claim already records a time, before the DELETE is answered).
        profile = {"class": "profile"}
        assert await eventually(
            lambda: hub.metrics.get("twinsync_hub_retention_swept_ms", **profile) > 0, within=10
        )
        left = env.points()
        assert {(p[1], p[3]) for p in left if p[3] == "coffee.segment"} == {
            (ann, "coffee.segment"),
            (bob, "coffee.segment"),
        }
        assert len([p for p in left if p[3] == "coffee.segment"]) == 2  # recent ones only
        assert len([p for p in left if p[3] == "coffee.brews_total"]) == 4  # all usage kept
        assert {p[4] for p in left if p[3] == "coffee.segment"} == {2}
        swept = hub.retention.last_swept()
        assert set(swept) == {"usage", "profile"}
        metric = hub.metrics.get("twinsync_hub_retention_swept_ms", **{"class": "profile"})
        assert metric == swept["profile"] > 0
        # Not this instance's turn again within sweep_s (nor another's: same file).
        assert await hub.retention.sweep_due() == []


@both_stores
async def test_sweeps_are_shared_between_instances_and_failures_give_the_turn_back(
    tmp_path: Path, hub_env: HubEnv, state: StateStore, state_url: tuple[str, str]
) -> None:
    settings = make_config(
        tmp_path, hub_env.services, "unused", retention={"profile": "1d", "sweep_s": 60}
    )
    down = settings.influx.model_copy(update={"url": "http://127.0.0.1:9", "timeout_s": 1})
    url, password = state_url

    def sweeper(on: StateStore, influx: InfluxStore) -> RetentionSweeper:
        return RetentionSweeper(
            settings.retention,
            state=on,
            store=influx,
            index=TwinIndex(state=on),
            clock=SystemClock(),
            metrics=Metrics(),
            brands=[hub_env.brand],
        )

    async with InfluxStore(down) as dead, InfluxStore(settings.influx) as live:
        await live.ensure_database()
        failing = sweeper(state, dead)
        with pytest.raises(StoreError, match="InfluxDB"):
            await failing.sweep_due()
        assert failing.last_swept() == {"profile": 0}  # the turn was given back
    # Six instances (each its own connection to the store and to InfluxDB, on a loop of
    # its own) find the turn due at the same moment: one takes it (the claim reads and
    # writes under the lock retention:profile).
    start = threading.Barrier(6)

    def instance() -> list[str]:
        async def sweep() -> list[str]:
            async with InfluxStore(settings.influx) as influx:
                with open_state_store(url, password=password) as own:
                    start.wait()
                    return list(await sweeper(own, influx).sweep_due())

        return asyncio.run(sweep())

    with ThreadPoolExecutor(6) as pool:
        swept = await asyncio.gather(
            *(asyncio.wrap_future(pool.submit(instance)) for _ in range(6))
        )
    assert sorted(swept) == [[]] * 5 + [["profile"]]
    async with InfluxStore(settings.influx) as live:
        assert await sweeper(state, live).sweep_due() == []


async def test_ceiling_policy_is_created_and_altered(tmp_path: Path, hub_env: HubEnv) -> None:
    def policies() -> dict[str, str]:
        res = hub_env.influx(f'SHOW RETENTION POLICIES ON "{hub_env.config.influx.database}"')
        return {row[0]: row[1] for s in res[0]["series"] for row in s["values"]}

    for ceiling, shown in (("30d", "720h0m0s"), ("8w", "1344h0m0s")):
        config = make_config(
            tmp_path,
            hub_env.services,
            hub_env.config.influx.database,
            hub_env.brand,
            influx={"retention_policy": "capped"},
            retention={"usage": "7d", "profile": "7d", "ceiling": ceiling},
        )
        async with Hub(config) as hub:
            await hub.ready.wait()
            assert policies()["capped"] == shown


@pytest.mark.parametrize(
    ("retention", "influx", "message"),
    [
        ({"usage": "10x"}, {}, "invalid duration '10x'"),
        ({"profile": "0d"}, {}, "invalid duration '0d'"),
        ({"profile": "30m"}, {}, "invalid duration '30m'"),
        ({"usage": "10d", "ceiling": "5d"}, {"retention_policy": "rp"}, "longer than"),
        ({"usage": "1d", "profile": "1d", "ceiling": "5d"}, {}, "needs influx.retention_policy"),
        ({"sweep_s": 0}, {}, "sweep_s"),
    ],
)
def test_bad_retention_config_is_refused_at_start_up(
    retention: dict[str, object], influx: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_hub_config(None, {"retention": retention, "influx": influx}, environ={})
