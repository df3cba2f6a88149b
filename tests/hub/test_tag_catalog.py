"""A newer tag catalog reaches devices signed, and nothing else does (real mosquitto, hub,
influxd and agent).

The hub is configured with a catalog (``[tags] catalog``, version 2), signs it with its
key and publishes it retained on the brand's ``broadcast/tags``; the agent takes it, its
tags follow the new rules with ``tags@2`` beside them, and the access export quotes the
new rule. Then an attacker on the broker tries a catalog signed by another key, a replay
of the captured older catalog after a newer one, an oversized catalog, another brand's
catalog and one signed with a device's key: each is refused and counted, and the
catalog in use stays.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from _fakes import get_json, send_json
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import ConfigError, Hub, ensure_hub_key
from cloud_hub.models import load_catalog
from cloud_hub.testing import seal_downlink
from edge_agent import Agent, load_config
from protocol import (
    BROADCAST,
    DEFAULT_TAGS,
    SignalIn,
    SigningKey,
    TagCatalog,
    TagDefinition,
    TagsOffer,
    broadcast_topic,
)
from twinsync.services import free_port

ANN = "ann.catalog@example.test"
DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000
WEEKEND = "share_weekend >= 0.2 and usual_days >= 7"


def _catalog(version: int, weekend_rule: str = WEEKEND) -> TagCatalog:
    """The default catalog with a looser weekend rule (Ann's 2/7 of weekend uses count)."""
    tags = tuple(
        TagDefinition(t.name, t.product, t.description, weekend_rule)
        if t.field == "coffee.tag_weekend_heavy"
        else t
        for t in DEFAULT_TAGS.tags
    )
    return TagCatalog(version, tags)


class _Tap:
    """A plain client on the (anonymous) test broker: captures and publishes, as anyone
    on the broker could."""

    def __init__(self, port: int, topic_: str) -> None:
        self.topic = topic_
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_, qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(msg.payload))

    def publish(self, payload: bytes, topic_: str | None = None) -> None:
        self.client.publish(topic_ or self.topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _evenings(days: int = 27) -> list[SignalIn]:
    now = int(time.time() * 1000)
    today = now - now % DAY
    rows: list[tuple[int, str, float | int]] = []
    for d in range(days, 0, -1):
        base = today - d * DAY
        rows += [
            (base + h * HOUR + 5 * MIN, "coffee.water_level_pct", 80.0) for h in (0, 6, 12, 18)
        ]
        for m in (0, 40, 80, 120):
            at = base + 19 * HOUR + m * MIN
            rows += [(at, "coffee.strength", 5), (at + 1000, "coffee.brew", 1)]
    rows.sort()
    return [
        SignalIn(seq=i + 1, ts=ts, subject=ANN, name=name, value=value)
        for i, (ts, name, value) in enumerate(rows)
    ]


@pytest.fixture
async def tag_hub(hub_env: HubEnv, tmp_path: Path) -> AsyncIterator[Hub]:
    path = tmp_path / "tags.json"
    path.write_text(_catalog(2).to_json())
    config = hub_env.config.model_copy(
        update={"tags": hub_env.config.tags.model_copy(update={"catalog": path})}
    )
    async with Hub(config) as h:
        await h.ready.wait()
        await h._mqtt.connected.wait()
        yield h


async def test_a_configured_catalog_reaches_devices_and_forgeries_do_not(
    tag_hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    env, hub = hub_env, tag_hub
    hub_key = ensure_hub_key(env.config.keys.secrets_dir)
    config = load_config(
        env.bundles["dev-0"],
        {
            "mqtt": {"port": env.services.mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "models": {"dir": str(tmp_path / "models")},
            "ingest": {"port": free_port()},
            "sync": {"flush_interval_ms": 20},
            "validation": {"max_signal_age_s": 30 * 86_400},
        },
        environ={},
    )
    tap = _Tap(env.services.mosquitto.port, broadcast_topic(env.brand, "tags"))
    try:
        async with Agent(config) as agent:
            assert agent._tags is not None
            tags = agent._tags
            assert await eventually(lambda: tags.catalog.ref == "tags@2", within=15)
            assert tags.catalog.kid == hub_key.kid  # signed by the hub, as manifests are
            agent.set_consent(ANN, {"analytics": True, "personalization": True}, "v1")
            await agent.ingest_many(_evenings())
            assert await agent.drained(20)
            assert agent._book is not None
            ann = agent._book.twin_of(ANN)

            # Forged: a catalog signed by another key, in a correctly hub-signed envelope.
            forged = _catalog(5, "usual_days >= 0").sign(SigningKey.generate())
            offer = TagsOffer(catalog=forged.to_json())
            tap.publish(seal_downlink(hub_key, "tags", env.brand, BROADCAST, offer))
            assert await eventually(lambda: agent.stats.get("tag_catalogs_refused") == 1)
            # Newer and genuine: taken. Then the captured older one replayed: refused.
            newer = _catalog(3).sign(hub_key)
            tap.publish(
                seal_downlink(
                    hub_key, "tags", env.brand, BROADCAST, TagsOffer(catalog=newer.to_json())
                )
            )
            assert await eventually(lambda: tags.catalog.ref == "tags@3")
            captured = tap.payloads[0]  # the hub's retained tags@2
            tap.publish(captured)
            assert await eventually(lambda: agent.stats.get("tag_catalogs_refused") == 2)
            # Oversized: valid JSON, hub-signed, padded beyond the catalog limit.
            big = json.dumps(json.loads(newer.to_json()), indent=1) + " " * 70_000
            tap.publish(
                seal_downlink(hub_key, "tags", env.brand, BROADCAST, TagsOffer(catalog=big))
            )
            assert await eventually(lambda: agent.stats.get("tag_catalogs_refused") == 3)
            # Another brand's catalog on this brand's topic: refused before it is read.
            bad_before = agent.stats["bad_acks"]
            other = seal_downlink(
                hub_key,
                "tags",
                "otherbrand",
                BROADCAST,
                TagsOffer(catalog=_catalog(9).sign(hub_key).to_json()),
            )
            tap.publish(other)
            assert await eventually(lambda: agent.stats["bad_acks"] == bad_before + 1)
            # A device's own key (as a compromised device would sign): not a hub key.
            device_key = SigningKey.from_bytes(
                (env.bundles["dev-1"].parent / "device.key").read_bytes()
            )
            offer = TagsOffer(catalog=_catalog(8, "usual_days >= 0").sign(device_key).to_json())
            tap.publish(seal_downlink(device_key, "tags", env.brand, BROADCAST, offer))
            assert await eventually(lambda: agent.stats["bad_acks"] == bad_before + 2)
            assert tags.catalog.ref == "tags@3"
            assert agent.stats["downlinks_refused"] >= 3
        # The refusals survive a restart: the agent starts on tags@3 again.
        async with Agent(config) as again:
            assert again._tags is not None
            assert again._tags.catalog.ref == "tags@3"
    finally:
        tap.close()

    fields = (await get_json(f"{hub.api_url}/v1/brands/{env.brand}/twins/{ann}", token=env.token))[
        "fields"
    ]
    assert fields["coffee.tag_weekend_heavy"]["value"] is True  # only the new rule sets it
    assert fields["coffee.tags_ref"]["value"] == "tags@2"
    status, export = await send_json(
        "POST", f"{hub.api_url}/v1/brands/{env.brand}/privacy/access", {"subject": ANN}, env.token
    )
    assert status == 200
    (weekend,) = [t for t in export["twins"][0]["tags"] if t["tag"] == "weekend_heavy"]
    assert (weekend["catalog"], weekend["rule"]) == ("tags@2", WEEKEND)


async def test_a_catalog_the_hub_cannot_use_stops_it_at_start_up(
    hub_env: HubEnv, tmp_path: Path
) -> None:
    path = tmp_path / "tags.json"
    cases = {
        "is not newer than the default": _catalog(1).to_json(),
        "unknown feature 'weekend_share'": _catalog(2)
        .to_json()
        .replace(WEEKEND, "weekend_share >= 0.4"),
        "malformed tag catalog": "{}",
    }
    for needle, text in cases.items():
        path.write_text(text)
        config = hub_env.config.model_copy(
            update={"tags": hub_env.config.tags.model_copy(update={"catalog": path})}
        )
        with pytest.raises(ConfigError, match=r"tags\.catalog") as caught:
            async with Hub(config):
                pass
        assert needle in str(caught.value)


def test_every_instance_signs_the_same_file_into_the_same_document(tmp_path: Path) -> None:
    """Devices take one document per version: two hub instances given the same file
    must publish the same bytes (no per-instance stamp in what they sign)."""
    path = tmp_path / "tags.json"
    path.write_text(_catalog(4).to_json())
    key = SigningKey.generate()
    first, second = load_catalog(path, key), load_catalog(path, key)
    assert first.to_json() == second.to_json()
    first.verify({key.kid: key.public})
    assert first.ref == "tags@4"
