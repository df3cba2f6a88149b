"""Behaviour tags end to end, with a real agent, broker, hub and InfluxDB.

A coffee customer who brews four strong cups every evening for four weeks gets the
default catalog's ``evening_routine``, ``strong_coffee`` and ``many_cups`` tags: computed
on the device from the shared features, sent (only what holds, with the catalog ref) as
twin fields, shown in the twin and found by ``tag has``. A customer without
personalization consent gets none on the wire (the sealed deltas are opened with the
hub's key and read). The access export quotes each tag's rule and catalog version; a
suppressed tag leaves the twin and the index and stays out when the device sends it
again; a corrected tag stands.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from hub_env import HubEnv, both_stores

from cloud_hub import Hub, ensure_hub_key
from edge_agent import Agent, load_config
from protocol import (
    DEFAULT_TAGS,
    TAG_FIELDS,
    BodyOpener,
    Delta,
    SignalIn,
    decode_body,
    hub_box_key,
    open_envelope,
)
from twinsync.services import free_port

ANN, BOB = "ann.tags@example.test", "bob.tags@example.test"
DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000
HELD = {"coffee.tag_evening_routine", "coffee.tag_strong_coffee", "coffee.tag_many_cups"}
_TAGS = set(TAG_FIELDS.values())


class _Sniffer:
    """Every delta payload of the brand the broker carries (anyone may subscribe)."""

    def __init__(self, port: int, brand: str) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        ready = threading.Event()
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"ts/v1/{brand}/+/delta", qos=1)
        self.client.loop_start()
        assert ready.wait(10), "sniffer did not subscribe"

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(msg.payload))

    def ops(self, env: HubEnv, since: int = 0) -> dict[str, dict[str, list[Any]]]:
        """twin -> field -> values sent (in payloads from the ``since``-th on), from every
        sealed delta opened with the hub key."""
        opener = BodyOpener([hub_box_key(ensure_hub_key(env.config.keys.secrets_dir))])
        out: dict[str, dict[str, list[Any]]] = {}
        with self._lock:
            payloads = list(self.payloads[since:])
        for payload in payloads:
            delta = decode_body("delta", opener.open(open_envelope(payload).envelope))
            assert isinstance(delta, Delta)
            for t in delta.twins:
                for op in t.ops:
                    out.setdefault(t.twin, {}).setdefault(op.field, []).append(op.value)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _evenings(subjects: list[str], days: int = 27) -> list[SignalIn]:
    """Four strong cups between 19:00 and 21:00 (UTC) every day for ``days`` days, the
    machine reporting its water level every two hours (it is on)."""
    now = int(time.time() * 1000)
    today = now - now % DAY
    rows: list[tuple[int, str, str, float | int]] = []
    for d in range(days, 0, -1):
        base = today - d * DAY
        rows += [
            (base + h * HOUR + 5 * MIN, "", "coffee.water_level_pct", 80.0) for h in range(0, 24, 2)
        ]
        for subject in subjects:
            for m in (0, 40, 80, 120):
                at = base + 19 * HOUR + m * MIN
                rows += [
                    (at, subject, "coffee.strength", 5),
                    (at + 1000, subject, "coffee.brew", 1),
                ]
    rows.sort()
    return [
        SignalIn(seq=i + 1, ts=ts, subject=subject or subjects[0], name=name, value=value)
        for i, (ts, subject, name, value) in enumerate(rows)
    ]


def _agent(env: HubEnv, tmp: Path) -> Agent:
    config = load_config(
        env.bundles["dev-0"],
        {
            "mqtt": {"port": env.services.mosquitto.port},
            "outbox": {"path": str(tmp / "outbox.sqlite")},
            "models": {"dir": str(tmp / "models")},
            "ingest": {"port": free_port()},
            "sync": {"flush_interval_ms": 20},
            "validation": {"max_signal_age_s": 30 * 86_400},
        },
        environ={},
    )
    return Agent(config)


async def _twin(hub: Hub, env: HubEnv, twin: str) -> dict[str, Any]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/twins/{twin}"
    result: dict[str, Any] = await get_json(url, token=env.token)
    return result["fields"]


async def _tagged(hub: Hub, env: HubEnv, tag: str) -> list[str]:
    where = urllib.parse.quote(f"tag has {tag}")
    url = f"{hub.api_url}/v1/brands/{env.brand}/twins?where={where}"
    result = await get_json(url, token=env.token)
    return [t["twin"] if isinstance(t, dict) else t for t in result["twins"]]


async def test_tags_reach_twin_and_index_and_only_with_profiling_consent(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    env = hub_env
    sniffer = _Sniffer(env.services.mosquitto.port, env.brand)
    try:
        async with _agent(env, tmp_path) as agent:
            assert agent._book is not None
            ann, bob = agent._book.twin_of(ANN), agent._book.twin_of(BOB)
            agent.set_consent(ANN, {"analytics": True, "personalization": True}, "v1")
            agent.set_consent(BOB, {"analytics": True}, "v1")  # no profiling for personalization
            await agent.ingest_many(_evenings([ANN, BOB]))
            assert await agent.drained(20)
        wire = sniffer.ops(env)
    finally:
        sniffer.close()
    # On the wire: only the tags that hold, once each, with the catalog that set them.
    ann_tags = {f: v for f, v in wire[ann].items() if f in _TAGS}
    assert ann_tags == {f: [True] for f in HELD}
    assert wire[ann]["coffee.tags_ref"] == [DEFAULT_TAGS.ref]
    # Bob's features travel (analytics), his tags do not: not even computed as false.
    assert any(f.startswith("coffee.f_") for f in wire[bob])
    assert not {f for f in wire[bob] if f in _TAGS or f == "coffee.tags_ref"}

    fields = await _twin(hub, env, ann)
    assert {f for f in fields if f in _TAGS} == HELD
    assert all(fields[f]["value"] is True for f in HELD)
    assert fields["coffee.tags_ref"]["value"] == "tags@1"
    assert not {f for f in await _twin(hub, env, bob) if f in _TAGS}
    assert await _tagged(hub, env, "evening_routine") == [ann]
    assert await _tagged(hub, env, "weekend_heavy") == []


@both_stores
async def test_export_quotes_the_rule_and_a_suppressed_tag_stays_suppressed(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    env = hub_env
    async with _agent(env, tmp_path) as agent:
        assert agent._book is not None
        ann = agent._book.twin_of(ANN)
        agent.set_consent(ANN, {"analytics": True, "personalization": True}, "v1")
        await agent.ingest_many(_evenings([ANN]))
        assert await agent.drained(20)
    base = f"{hub.api_url}/v1/brands/{env.brand}/privacy"
    status, export = await send_json("POST", f"{base}/access", {"subject": ANN}, env.token)
    assert status == 200, export
    (twin,) = export["twins"]
    tags = {t["field"]: t for t in twin["tags"]}
    assert set(tags) == HELD
    strong = tags["coffee.tag_strong_coffee"]
    definition = DEFAULT_TAGS.definition("coffee.tag_strong_coffee")
    assert definition is not None
    assert (strong["value"], strong["catalog"], strong["rule"], strong["description"]) == (
        True,
        "tags@1",
        definition.rule,
        definition.description,
    )
    assert {f["field"]: f["class"] for f in twin["fields"]}["coffee.tag_many_cups"] == "tag"

    # Suppress one tag, correct another.
    status, receipt = await send_json(
        "POST",
        f"{base}/rectification",
        {
            "subject": ANN,
            "suppress": ["coffee.tag_strong_coffee"],
            "set": {"coffee.tag_many_cups": False},
        },
        env.token,
    )
    assert status == 200, receipt
    fields = await _twin(hub, env, ann)
    assert "coffee.tag_strong_coffee" not in fields
    assert fields["coffee.tag_many_cups"]["value"] is False
    assert fields["coffee.tag_many_cups"]["device"] == "_customer"
    assert await _tagged(hub, env, "strong_coffee") == []
    assert await _tagged(hub, env, "many_cups") == []
    assert await _tagged(hub, env, "evening_routine") == [ann]

    # A device still sending the suppressed tag: acked, not stored, not indexed.
    fake = FakeDevice(env.bundles["dev-1"].parent, env.brand, "dev-1", env.services.mosquitto.port)
    try:
        fake.publish(fake.delta(1, {ann: [(now_hlc(), "coffee.tag_strong_coffee", True)]}))
        await fake.wait_acked({1})
    finally:
        fake.close()
    assert "coffee.tag_strong_coffee" not in await _twin(hub, env, ann)
    assert await _tagged(hub, env, "strong_coffee") == []
    assert await env.index_differences() == []


async def test_bad_tag_corrections_are_refused_and_change_nothing(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    ann = device.twin(ANN)
    device.publish(device.delta(1, {ann: [(now_hlc(), "coffee.tag_evening_routine", True)]}))
    await device.wait_acked({1})
    url = f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/rectification"
    for value in ("no", 0, None):
        status, answer = await send_json(
            "POST",
            url,
            {"subject": ANN, "set": {"coffee.tag_evening_routine": value}},
            hub_env.token,
        )
        assert (status, answer["error"]["code"]) == (400, "bad_rectification"), answer
        assert "true or false" in answer["error"]["message"]
    fields = await _twin(hub, hub_env, ann)
    assert fields["coffee.tag_evening_routine"]["value"] is True


async def test_an_objection_removes_tags_and_stops_them_on_the_device(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    env = hub_env
    sniffer = _Sniffer(env.services.mosquitto.port, env.brand)
    try:
        async with _agent(env, tmp_path) as agent:
            assert agent._book is not None
            ann = agent._book.twin_of(ANN)
            agent.set_consent(ANN, {"analytics": True, "personalization": True}, "v1")
            signals = _evenings([ANN])
            await agent.ingest_many(signals)
            assert await agent.drained(20)
            assert await _tagged(hub, env, "evening_routine") == [ann]
            base = f"{hub.api_url}/v1/brands/{env.brand}/privacy"
            status, receipt = await send_json(
                "POST", f"{base}/objection", {"subject": ANN}, env.token
            )
            assert status == 200, receipt
            assert not {f for f in await _twin(hub, env, ann) if f in _TAGS}
            assert await _tagged(hub, env, "evening_routine") == []
            assert await eventually(lambda: not agent.consent_state(ANN)["personalization"])
            sent_before = len(sniffer.payloads)
            # 150 morning brews yesterday: evening_routine would now be lost (a change
            # the device would send) and the coffee count changes: no tag may leave.
            now = int(time.time() * 1000)
            morning = now - now % DAY - DAY + 6 * HOUR
            seq = signals[-1].seq
            await agent.ingest_many(
                [
                    SignalIn(
                        seq=seq + i + 1,
                        ts=morning + i * 2 * MIN,
                        subject=ANN,
                        name="coffee.brew",
                        value=1,
                    )
                    for i in range(150)
                ]
            )
            assert await agent.drained(20)
        later = sniffer.ops(env, since=sent_before)
    finally:
        sniffer.close()
    assert later[ann]["coffee.brews_total"]  # usage keeps flowing
    assert not {f for f in later[ann] if f in _TAGS or f == "coffee.tags_ref"}
    assert not {f for f in await _twin(hub, env, ann) if f in _TAGS}
