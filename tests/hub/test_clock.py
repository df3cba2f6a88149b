"""Every wall-clock time the hub reads or stamps comes from the one clock it was given.

The hub runs on a clock 400 days behind the real one, against the real broker and
database: each time it stamps (API keys, the audit log, privacy requests and their
deadlines, receipts, access exports, webhook events and their signatures, hub-signed
device commands, uploaded models, rollouts) must be that clock's, and what it reads
(the default range of a history read) too. A component still reading the system clock
would stamp a time 400 days off.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from _fakes import get_json, send_json
from _poll import eventually
from aiohttp import web
from hub_env import HubEnv
from paho.mqtt.enums import CallbackAPIVersion

from cloud_hub import Hub
from cloud_hub.privacy import DEADLINE_MS, verify_signature
from cloud_hub.store import format_value
from protocol import (
    HLC,
    ConsentCommand,
    ModelManifest,
    Tombstones,
    VerifyKey,
    decode_body,
    feature_names,
    open_envelope,
    pseudonymize,
    sha256_hex,
)
from twinsync.services import free_port

SHIFT_MS = -400 * 86_400_000


class ShiftedClock:
    """The real clock moved by ``SHIFT_MS`` (monotonic time is the real one)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + SHIFT_MS

    def monotonic(self) -> float:
        return time.monotonic()


CLOCK = ShiftedClock()


class Stamps:
    """Brackets calls with the hub's clock: a stamp the hub made meanwhile lies within.
    Stamps that do not are collected in ``off`` (name, stamp, how far off), so one run
    shows every component that read another clock."""

    def __init__(self, off: list[tuple[str, int, int]]) -> None:
        self.off = off

    def __enter__(self) -> Stamps:
        self.lo = CLOCK.now_ms()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hi = CLOCK.now_ms()

    def check(self, name: str, stamp: int) -> None:
        if not self.lo <= stamp <= self.hi:
            self.off.append((name, stamp, stamp - self.lo))


@pytest.fixture
async def hub(hub_env: HubEnv) -> AsyncIterator[Hub]:
    async with Hub(hub_env.config, clock=CLOCK) as h:
        await h.ready.wait()
        yield h


@pytest.fixture
def broadcasts(hub_env: HubEnv) -> Iterator[list[tuple[int, Any]]]:
    """(envelope sent_ms, body) of every hub-signed broadcast to the brand's devices."""
    hub_key = VerifyKey.from_hex((hub_env.bundles["dev-0"].parent / "hub.pub").read_text())
    got: list[tuple[int, Any]] = []

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        envelope = open_envelope(msg.payload).verify(hub_key)
        got.append((envelope.sent_ms, decode_body(envelope.kind, envelope.body)))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"clock-{hub_env.brand}")
    client.on_message = on_message
    client.connect("127.0.0.1", hub_env.services.mosquitto.port)
    client.subscribe(f"ts/v1/{hub_env.brand}/broadcast/+", qos=1)
    client.loop_start()
    yield got
    client.loop_stop()
    client.disconnect()


async def _send(hub: Hub, env: HubEnv, method: str, path: str, body: object) -> Any:
    status, answer = await send_json(
        method, f"{hub.api_url}/v1/brands/{env.brand}{path}", body, env.token
    )
    assert status in (200, 201, 202), (status, answer)
    return answer


async def _get(hub: Hub, env: HubEnv, path: str) -> Any:
    return await get_json(f"{hub.api_url}/v1/brands/{env.brand}{path}", token=env.token)


async def test_keys_audit_models_rollouts_and_reads_use_the_hubs_clock(
    hub: Hub, hub_env: HubEnv
) -> None:
    off: list[tuple[str, int, int]] = []
    with Stamps(off) as made:
        key = await _send(hub, hub_env, "POST", "/keys", {"name": "crm", "scopes": ["read"]})
    made.check("api key created_ms", key["created_ms"])
    audit = (await _get(hub, hub_env, "/audit"))["audit"]
    assert [a["route"] for a in audit] == ["/v1/brands/{brand}/keys"]
    made.check("audit ts_ms", audit[0]["ts_ms"])

    data = b"model bytes the repository only hashes"
    manifest = ModelManifest(
        name="segment-coffee",
        version=1,
        kind="segment",
        product="coffee",
        inputs=feature_names("coffee"),
        sha256=sha256_hex(data),
        size=len(data),
    )
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.to_json(), content_type="application/json")
    form.add_field("model", data, filename="model.onnx")
    with Stamps(off) as uploaded:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub_env.token}"}) as s,
            s.post(f"{hub.api_url}/v1/brands/{hub_env.brand}/models", data=form) as r,
        ):
            model = await r.json()
            assert r.status == 201, model
    uploaded.check("model created_ms", model["created_ms"])
    await _send(hub, hub_env, "PUT", "/cohorts/beta", {"devices": ["dev-0"]})
    with Stamps(off) as started:
        target = {"model": "segment-coffee@1", "target": {"cohort": "beta"}}
        rollout = await _send(hub, hub_env, "POST", "/rollouts", target)
    started.check("rollout created_ms", rollout["created_ms"])

    # A history read without start/end covers the last 7 days by the hub's clock: a point
    # stored at the real now is 400 days in its future, found only when asked for.
    twin = pseudonymize(b"k" * 32, 1, "someone")
    real_ms = time.time_ns() // 1_000_000
    value = format_value("coffee.strength", 3)
    point = f"coffee.strength={value} {HLC(real_ms, 0).to_ns()}"
    hub_env.write([f"twin,brand={hub_env.brand},device=dev-0,twin={twin} {point}"])
    path = f"/twins/{twin}/history?field=coffee.strength"
    found = await _get(hub, hub_env, f"{path}&start={real_ms - 1}&end={real_ms + 1}")
    assert len(found["points"]) == 1, found
    by_default = (await _get(hub, hub_env, path))["points"]
    if by_default:
        off.append(("history default range (found a point 400 days ahead)", real_ms, 0))
    assert not off, "\n".join(f"{n}: {d // 86_400_000} days off" for n, _s, d in off)


async def test_privacy_requests_receipts_commands_and_webhooks_use_the_hubs_clock(
    hub: Hub, hub_env: HubEnv, broadcasts: list[tuple[int, Any]]
) -> None:
    events: list[tuple[dict[str, Any], bytes, str]] = []

    async def backend(request: web.Request) -> web.Response:
        data = await request.read()
        events.append((await request.json(), data, request.headers["TwinSync-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", backend)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    off: list[tuple[str, int, int]] = []
    try:
        url = f"http://127.0.0.1:{port}/hooks"
        hook = await _send(hub, hub_env, "PUT", "/webhook", {"url": url})
        subject = {"subject": "ann@example.test"}
        with Stamps(off) as accessed:
            export = await _send(hub, hub_env, "POST", "/privacy/access", subject)
        accessed.check("access generated_ms", export["generated_ms"])
        change = {**subject, "purposes": {"marketing": True}, "notice": "v3"}
        with Stamps(off) as consented:
            await _send(hub, hub_env, "POST", "/privacy/consent", change)
        with Stamps(off) as erased:
            receipt = await _send(hub, hub_env, "POST", "/privacy/erasure", subject)
        erased.check("erasure receipt received_ms", receipt["received_ms"])
        erased.check("erasure receipt completed_ms", receipt["completed_ms"])

        listed = (await _get(hub, hub_env, "/privacy/requests"))["requests"]
        requests = {r["kind"]: r for r in listed}
        accessed.check("access request received_ms", requests["access"]["received_ms"])
        accessed.check("access request completed_ms", requests["access"]["completed_ms"])
        consented.check("consent request received_ms", requests["consent"]["received_ms"])
        erasure = requests["erasure"]
        erased.check("erasure request received_ms", erasure["received_ms"])
        assert erasure["deadline_ms"] == erasure["received_ms"] + DEADLINE_MS
        assert erasure["state"] == "done"

        # The commands devices get, each signed and sent at the hub's time.
        assert await eventually(lambda: len(broadcasts) >= 2, within=10), broadcasts
        [(consent_sent, consent)] = [(t, b) for t, b in broadcasts if isinstance(b, ConsentCommand)]
        [(tomb_sent, tomb)] = [(t, b) for t, b in broadcasts if isinstance(b, Tombstones)]
        consented.check("consent command sent_ms", consent_sent)
        consented.check("consent command ts_ms", consent.ts_ms)
        erased.check("tombstone sent_ms", tomb_sent)
        erased.check("tombstone erased_ms", tomb.erased_ms)

        # The brand's backend hears both, stamped and signed at the hub's time.
        assert await eventually(lambda: len(events) >= 2, within=15), events
        by_event = {body["event"]: (body, data, sig) for body, data, sig in events}
        body, data, signature = by_event["consent"]
        consented.check("consent event emitted_ms", body["emitted_ms"])
        erased.check("erasure event emitted_ms", by_event["erasure"][0]["emitted_ms"])
        # Signed when sent (a later round of the sender), in whole seconds.
        signed_ms = int(dict(part.split("=", 1) for part in signature.split(","))["t"]) * 1000
        if not consented.lo - 1000 < signed_ms <= CLOCK.now_ms():
            off.append(("webhook signature t", signed_ms, signed_ms - consented.lo))
    finally:
        await runner.cleanup()
    assert not off, "\n".join(f"{n}: {d // 86_400_000} days off" for n, _s, d in off)
    # A receiver on the hub's clock accepts the signature; one on the real clock finds it
    # 400 days stale.
    assert verify_signature(hook["secret"], data, signature, clock=CLOCK)
    assert not verify_signature(hook["secret"], data, signature)
