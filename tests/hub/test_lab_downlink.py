"""The strategy lab's exposure downlink (``protocol.OfferExposure``) between a real hub,
mosquitto, InfluxDB and an agent, and the attacks on it.

An experiment created through the API sends each device holding treated twins the
offer, signed by the hub, on the device's own ``offer`` topic; the agent hands it to the
local application for each treated twin whose customer consents to marketing, and to
nobody else. Then, as anyone on the broker could: the captured exposure replayed (also
after the agent restarts), one signed by another key, one addressed to another device,
one naming too many twins, a megabyte of garbage: each refused and counted, nothing
handed on. A hub-signed exposure for a customer without marketing consent is recorded
as not shown.
"""

from __future__ import annotations

import random
from pathlib import Path

from _fakes import send_json
from _poll import eventually
from hub_env import HubEnv
from test_downlink_replay import DORA, ERIN, _config, _signal, _Tap

from cloud_hub import Hub, ensure_hub_key
from cloud_hub.store import Experiments, state_store_from
from cloud_hub.testing import seal_downlink
from edge_agent import Agent, Exposure
from protocol import (
    OPTIONAL_PURPOSES,
    Channel,
    OfferExposure,
    SigningKey,
    SystemClock,
    decode_body,
    open_envelope,
    topic,
)

FRED = "fred.offer@example.test"
ALL = dict.fromkeys(OPTIONAL_PURPOSES, True)


async def test_the_offer_reaches_the_treated_consenting_twins_once(
    hub_env: HubEnv, tmp_path: Path
) -> None:
    env = hub_env
    shown: list[Exposure] = []
    config = _config(env, tmp_path)
    port = env.services.mosquitto.port
    tap = _Tap(port, topic(env.brand, "dev-0", Channel.OFFER))
    try:
        async with Agent(config, on_exposure=shown.append) as agent:
            assert agent._uplink is not None
            assert await eventually(agent._uplink.connected.is_set, within=15)
            twins = {s: agent.twin_of(s) for s in (DORA, ERIN, FRED)}
            for subject in (DORA, FRED):  # Erin never consents to marketing
                agent.set_consent(subject, ALL, "v1")
            signals = [_signal(i + 1, s, "coffee.brew", 1) for i, s in enumerate(twins)]
            assert [r.status for r in await agent.ingest_many(signals)] == ["accepted"] * 3
            # A seeded source for the experiment's id and salt, so the run replays.
            async with Hub(env.config, entropy=random.Random(7).randbytes) as hub:
                await hub.ready.wait()
                assert await agent.drained(15)
                url = f"{hub.api_url}/v1/brands/{env.brand}/lab/experiments"
                new = {"offer": {"name": "free descaler", "cost": 3}, "holdout": 0.05}
                status, created = await send_json("POST", url, new, env.token)
                assert status == 201, created
                with state_store_from(env.config.state) as state:
                    arms = Experiments(state=state, clock=SystemClock()).members(
                        env.brand, created["id"]
                    )
                treated = {t for t, arm in arms.items() if arm == "treated"}
                assert treated, "a holdout of 5 % leaves someone treated"
                captured = await tap.next_after(0)
                body = decode_body("offer", open_envelope(captured).envelope.body)
                assert isinstance(body, OfferExposure)
                assert set(body.twins) == treated
                assert body.experiment == created["id"]
                consenting = treated - {twins[ERIN]}
                assert await eventually(lambda: len(shown) == len(consenting), within=15)
                assert {e.twin for e in shown} == consenting
                assert all(e.offer == "free descaler" for e in shown)
                assert agent.stats.get("offers_no_consent", 0) == int(twins[ERIN] in treated)

                # The captured exposure, replayed: refused, counted, nothing handed on.
                before = agent.stats.get("downlinks_refused", 0)
                tap.replay(captured)
                assert await eventually(
                    lambda: agent.stats.get("downlinks_refused", 0) > before, within=10
                )
                assert len(shown) == len(consenting)

                # Forged (another key), misdirected (dev-1's), too many twins, garbage.
                bad = agent.stats["bad_acks"]
                hub_key = ensure_hub_key(env.config.keys.secrets_dir)
                fresh = OfferExposure(
                    experiment="exp-" + "f" * 12,
                    offer="x",
                    twins=(twins[DORA],),
                    ts_ms=SystemClock().now_ms(),
                )
                forged = seal_downlink(SigningKey.generate(), "offer", env.brand, "dev-0", fresh)
                misdirected = seal_downlink(hub_key, "offer", env.brand, "dev-1", fresh)
                too_many = seal_downlink(
                    hub_key,
                    "offer",
                    env.brand,
                    "dev-0",
                    _Wire({**fresh.to_wire(), "twins": [twins[DORA]] * 65}),
                )
                for payload in (forged, misdirected, too_many, b"\x93" * 1_000_000):
                    tap.replay(payload)
                assert await eventually(lambda: agent.stats["bad_acks"] >= bad + 4, within=10)
                assert len(shown) == len(consenting)

                # Hub-signed and fresh, but Erin never consented to marketing.
                no_consent = agent.stats.get("offers_no_consent", 0)
                erin = OfferExposure(
                    experiment="exp-" + "e" * 12,
                    offer="x",
                    twins=(twins[ERIN],),
                    ts_ms=SystemClock().now_ms(),
                )
                tap.replay(seal_downlink(hub_key, "offer", env.brand, "dev-0", erin))
                assert await eventually(
                    lambda: agent.stats.get("offers_no_consent", 0) == no_consent + 1, within=10
                )
                assert len(shown) == len(consenting)

        # The memory is on disk: a restarted agent refuses the replay too.
        async with Agent(config, on_exposure=shown.append) as again:
            assert again._uplink is not None
            assert await eventually(again._uplink.connected.is_set, within=15)
            before = again.stats.get("downlinks_refused", 0)
            tap.replay(captured)
            assert await eventually(
                lambda: again.stats.get("downlinks_refused", 0) > before, within=10
            )
            assert len(shown) == len(consenting)
    finally:
        tap.close()


class _Wire:
    """A body as raw wire data (what a hostile sender can sign with a stolen key)."""

    def __init__(self, data: dict[str, object]) -> None:
        self._data = data

    def to_wire(self) -> dict[str, object]:
        return self._data
