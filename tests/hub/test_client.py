"""twinsync.client against a real hub (mosquitto, InfluxDB, the hub in-process).

- Every client method, blocking (:class:`Client`) and asyncio (:class:`AsyncClient`),
  on real routes with data a device sent: twins and their pages, history (pages and
  buckets), consent, devices, segment changes (queried and streamed live), the webhook,
  cohorts, a model uploaded and downloaded, a rollout, keys and the audit log, and every
  data-subject request, whose erasure receipt verifies with the hub's key.
- Refusals reach the caller as the hub said them: another brand's key is the 403 class
  with the hub's message, a device's credentials and a revoked key the 401 class, a
  2 MiB body the 413 class, and nothing changed.
- Retries: an idempotent read is retried on 503 (InfluxDB stopped) as often as the
  policy says, waiting at least ``Retry-After``, and succeeds once InfluxDB is back; a
  privacy request is never retried; no retry logs the key.

The blocking client is driven in threads (the hub serves on this test's event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeDevice, now_hlc
from hub_env import HubEnv, make_config

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.privacy import verify_receipt
from protocol import Channel, ConsentEntry, Delta, Op, TwinOps, VerifyKey, packb
from twinsync.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ClientConfigError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RetryPolicy,
    SegmentChange,
    UnavailableError,
)
from twinsync.services import LocalServices

REPO = Path(__file__).resolve().parents[2]
ANN, BOB = "ann@example.com", "bob@example.com"
MANIFEST = REPO / "edge_agent/models/churn-coffee.manifest.json"
MODEL = REPO / "edge_agent/models/churn-coffee.onnx"
#: a well-formed twin id no device ever made
UNKNOWN_TWIN = "1-" + "0" * 32


class Blocking:
    """The blocking client's methods as coroutines: each call runs in a thread, and an
    iterator it returns is read to a list there too."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kw: Any) -> Any:
            def run() -> Any:
                result = method(*args, **kw)
                return list(result) if inspect.isgenerator(result) else result

            return await asyncio.to_thread(run)

        return call


class Awaiting:
    """The asyncio client's methods, with an async iterator read to a list."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kw: Any) -> Any:
            result = method(*args, **kw)
            if inspect.isasyncgen(result):
                return [item async for item in result]
            return await result

        return call


@pytest.fixture(params=["blocking", "asyncio"])
async def api(
    request: pytest.FixtureRequest, hub: Hub, hub_env: HubEnv
) -> AsyncIterator[Callable[..., Any]]:
    """Makes clients of this test's hub, of the flavour the test runs with."""
    made: list[AsyncClient] = []

    def make(brand: str | None = None, **kw: Any) -> Any:
        kw.setdefault("api_key", hub_env.token)
        if request.param == "blocking":
            return Blocking(Client(hub.api_url, brand or hub_env.brand, **kw))
        client = AsyncClient(hub.api_url, brand or hub_env.brand, **kw)
        made.append(client)
        return Awaiting(client)

    yield make
    for client in made:
        await client.aclose()


async def _seed(device: FakeDevice, seq: int, subject: str, brews: int) -> str:
    """A delta of one customer's twin: a counter, two segments, a churn score with their
    models, and a consent entry."""
    twin = device.twin(subject)
    ops = [
        (now_hlc(-3000), "coffee.brews_total", brews),
        (now_hlc(-3000), "coffee.segment", 1),
        (now_hlc(-3000), "coffee.segment_model", "segment-coffee@1"),
        (now_hlc(-2000), "coffee.segment", 3),
        (now_hlc(-2000), "coffee.segment_model", "segment-coffee@1"),
        (now_hlc(-2000), "coffee.churn_risk", 0.25),
        (now_hlc(-2000), "coffee.churn_model", "churn-coffee@1"),
    ]
    now_ms = time.time_ns() // 1_000_000
    entry = ConsentEntry(twin, now_ms - 1000, (("analytics", True),), "device", "v1")
    delta = Delta(
        twins=(TwinOps(twin, tuple(Op(h, f, v) for h, f, v in ops)),),  # type: ignore[arg-type]
        consent=(entry,),
    )
    device.publish(device.envelope("delta", seq, packb(delta.to_wire())))
    await device.wait_acked({seq})
    return twin


async def test_every_method_on_the_real_hub(
    api: Callable[..., Any], hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """Each method against the real route, with what a device sent, in both flavours."""
    ann = await _seed(device, 1, ANN, 2)
    bob = await _seed(device, 2, BOB, 5)
    device.publish(device.status(), channel=Channel.STATUS)
    c = api()

    # Twins: a page, its next page, every id through the pages; one twin's state.
    page = await c.list_twins(limit=1)
    assert page.twins == (min(ann, bob),)
    assert page.next is not None
    assert await c.iter_twins(limit=1) == sorted([ann, bob])
    twin = await c.get_twin(ann)
    assert twin.fields["coffee.brews_total"].value == 2
    assert twin.fields["coffee.segment"].device == "dev-0"
    assert twin.scores.churn_risk is not None
    assert (twin.scores.churn_risk.value, twin.scores.churn_risk.product) == (0.25, "coffee")
    # History: raw points a page at a time, followed; buckets.
    first = await c.get_twin_history(ann, "coffee.segment", limit=1)
    assert [p.value for p in first.points] == [1]
    assert first.next is not None
    points = await c.iter_twin_history(ann, "coffee.segment", limit=1)
    assert [(p.value, p.device) for p in points] == [(1, "dev-0"), (3, "dev-0")]
    buckets = await c.get_twin_history_buckets(ann, "coffee.brews_total", "1h")
    assert [b.value for b in buckets.points][-1] == 2
    consent = await c.get_twin_consent(ann)
    assert consent.current["analytics"].granted is True
    assert [e["actor"] for e in consent.ledger] == ["device"]

    # Fleet and segments.
    devices = {d.device: d for d in (await c.list_devices()).devices}
    assert set(devices) == {"dev-0", "dev-1", "dev-2"}
    assert devices["dev-0"].online is True
    changes = await c.list_segment_changes("coffee")
    assert {(ch.twin, ch.from_, ch.to) for ch in changes.changes} == {
        (t, f, to) for t in (ann, bob) for f, to in ((None, 1), (1, 3))
    }

    # The webhook: its secret once, hidden from repr.
    hook = await c.set_webhook("http://127.0.0.1:9/hooks")
    assert len(hook.secret.get_secret_value()) > 30
    assert hook.secret.get_secret_value() not in repr(hook)
    assert (await c.get_webhook()).url == "http://127.0.0.1:9/hooks"

    # Models, cohorts, rollouts.
    uploaded = await c.upload_model(MANIFEST, MODEL)
    assert uploaded.model == "churn-coffee@1"
    assert uploaded.warnings  # unsigned: the hub says it cannot vouch for it
    assert [m.model for m in (await c.list_models()).models] == ["churn-coffee@1"]
    sha256 = json.loads(MANIFEST.read_text())["sha256"]
    assert await c.download_model("churn-coffee", 1, sha256=sha256) == MODEL.read_bytes()
    assert (await c.put_cohort("beta", ["dev-0", "dev-1"])).devices == ("dev-0", "dev-1")
    assert (await c.get_cohort("beta")).devices == ("dev-0", "dev-1")
    rollout = await c.create_rollout("churn-coffee@1", cohort="beta")
    assert (rollout.devices, rollout.target) == (2, {"cohort": "beta"})
    listed = (await c.list_rollouts()).rollouts
    assert [(r.id, r.running + r.pending + r.refused) for r in listed] == [(rollout.id, 2)]
    detail = await c.get_rollout(rollout.id)
    assert set(detail.members) == {"dev-0", "dev-1"}

    # Keys: a read-only key works for reads and is refused the rest; revoked, refused.
    created = await c.create_key("crm", ["read"])
    token = created.token.get_secret_value()
    assert token not in repr(created)
    reader = api(api_key=token)
    assert (await reader.get_twin(ann)).twin == ann
    with pytest.raises(PermissionDeniedError) as denied:
        await reader.create_key("x", ["admin"])
    assert denied.value.code == "missing_scope"
    assert "needs scope 'admin'" in denied.value.message
    assert {k.name for k in (await c.list_keys()).keys} == {"tests", "crm"}
    assert (await c.revoke_key(created.key_id)).revoked is True
    with pytest.raises(AuthenticationError) as revoked:
        await reader.list_twins()  # a replay of a revoked key
    assert revoked.value.code == "revoked_key"
    audit = (await c.get_audit_log(limit=5)).audit
    assert audit[0].route == "/v1/brands/{brand}/keys/{key_id}"
    assert audit[0].method == "DELETE"

    # Data-subject requests.
    export = await c.request_access(ANN)
    assert [t.twin for t in export.twins] == [ann]
    assert {f.field for f in export.twins[0].fields} >= {"coffee.brews_total"}
    accepted = await c.change_consent(ANN, {"marketing": False}, "v2")
    assert accepted.twins == (ann,)
    rectified = await c.request_rectification(ANN, values={"coffee.strength": 3})
    assert rectified.set_ == ("coffee.strength",)
    objected = await c.request_objection(ANN)
    assert objected.field_class_removed == "profile"
    assert objected.points_found > 0
    erased = await c.request_erasure(BOB)
    assert erased.twins == (bob,)
    assert erased.points_found > 0
    hub_key = VerifyKey.from_hex((hub_env.bundles["dev-0"].parent / "hub.pub").read_text())
    verify_receipt(erased.to_dict(), hub_key)  # the receipt as signed, unaltered
    requests = (await c.list_privacy_requests()).requests
    assert [r.kind for r in requests][::-1] == [
        "access",
        "consent",
        "rectification",
        "objection",
        "erasure",
    ]
    with pytest.raises(NotFoundError) as gone:
        await c.get_twin(bob)
    assert gone.value.code == "twin_not_found"


async def test_refusals_reach_the_caller_as_the_hub_said_them(
    api: Callable[..., Any], hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """Another brand's key: the 403 class with the hub's message. A device's broker
    password: the 401 class. A 2 MiB subject: the 413 class. A bad limit: the 400 class
    with what to send. Nothing changed."""
    twin = await _seed(device, 1, ANN, 2)
    keys = ApiKeys(hub_env.config.registry.path)
    _, foreign = keys.create("other-brand", "attacker", SCOPES)
    before = await api().list_privacy_requests()

    attacker = api(api_key=foreign)  # brand B's key on brand A's routes
    for call in (attacker.get_twin(twin), attacker.request_erasure(ANN)):
        with pytest.raises(PermissionDeniedError) as wrong:
            await call
        assert (wrong.value.status, wrong.value.code) == (403, "wrong_brand")
        assert wrong.value.message == (
            f"this key belongs to brand 'other-brand', not {hub_env.brand!r}"
        )
    password = (hub_env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    with pytest.raises(AuthenticationError) as device_key:
        await api(api_key=password).get_twin(twin)
    assert device_key.value.code == "bad_key"
    assert "tsk_<id>_<secret>" in device_key.value.message
    with pytest.raises(PayloadTooLargeError) as too_large:
        await api().request_access("x" * (2 * 1024 * 1024))
    assert (too_large.value.status, too_large.value.code) == (413, "request_entity_too_large")
    with pytest.raises(BadRequestError) as bad:
        await api().list_twins(limit=0)
    assert bad.value.code == "bad_limit"
    assert "limit must be a whole number from 1 to 10000" in str(bad.value)

    assert await api().list_privacy_requests() == before
    assert (await api().get_twin(twin)).fields["coffee.brews_total"].value == 2
    assert [k.name for k in keys.list(hub_env.brand)] == ["tests"]


async def test_the_live_stream_in_both_flavours(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """A stream opened before a change gets it live; one opened with ``since`` replays
    what came before; a missing product is the 400 class before any event."""
    blocking = Client(hub.api_url, hub_env.brand, api_key=hub_env.token)
    async_client = AsyncClient(hub.api_url, hub_env.brand, api_key=hub_env.token)
    try:
        with pytest.raises(BadRequestError) as refused:
            async with async_client.stream_segment_changes("kettle"):
                pass
        assert refused.value.code == "bad_product"
        async with async_client.stream_segment_changes("coffee") as stream:
            twin = await _seed(device, 1, ANN, 2)
            live: list[SegmentChange] = []
            async for item in stream:
                assert isinstance(item, SegmentChange)
                live.append(item)
                if len(live) == 2:
                    break
        assert [(c.twin, c.from_, c.to) for c in live] == [(twin, None, 1), (twin, 1, 3)]
        assert stream.last_event_id == str(live[-1].time_ms)

        def replay() -> list[Any]:
            with blocking.stream_segment_changes("coffee", since=0) as events:
                out = []
                for item in events:
                    out.append(item)
                    if len(out) == 2:
                        return out
            return out

        replayed = await asyncio.to_thread(replay)
        assert [(c.twin, c.to) for c in replayed] == [(twin, 1), (twin, 3)]
    finally:
        await async_client.aclose()


def test_a_client_without_a_key_says_where_to_put_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINSYNC_API_KEY", raising=False)
    with pytest.raises(ClientConfigError, match="TWINSYNC_API_KEY"):
        Client("http://127.0.0.1:8080", "acme")
    monkeypatch.setenv("TWINSYNC_API_KEY", "tsk_0123456789ab_" + "x" * 43)
    client = Client("http://127.0.0.1:8080", "acme")
    assert "tsk_" not in repr(client)


@pytest.fixture
def own_hub_env(tmp_path: Path, own_services: LocalServices, unique: str) -> HubEnv:
    """A hub on services of this test's own (it stops InfluxDB)."""
    brand = f"b{unique}"
    config = make_config(tmp_path, own_services, f"db{unique}", brand)
    provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        brand,
        [("dev-0", "coffee")],
        tmp_path / "bundles",
        "127.0.0.1",
        own_services.mosquitto.port,
    )
    _key, token = ApiKeys(config.registry.path).create(brand, "tests", SCOPES)
    return HubEnv(config, {}, brand, own_services, token)


async def test_reads_are_retried_on_503_and_privacy_requests_never(
    own_hub_env: HubEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """InfluxDB stopped: a read of it (a twin's state) is sent ``attempts`` times, waiting
    at least the hub's Retry-After (capped) between tries, then raises the 503 class; a
    privacy request is sent once. With InfluxDB started during the first wait, the read
    goes through (the hub answers that it holds no such twin). The key is in no log
    line."""
    env = own_hub_env
    influxd = env.services.influxd
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        waits: list[float] = []
        policy = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05)
        client = Client(hub.api_url, env.brand, api_key=env.token, retry=policy, sleep=waits.append)
        influxd.stop()
        try:
            refused = hub.metrics.get("twinsync_hub_api_refused_total", status="503")
            with (
                caplog.at_level(logging.WARNING, logger="twinsync.client"),
                pytest.raises(UnavailableError) as down,
            ):
                await asyncio.to_thread(client.get_twin, UNKNOWN_TWIN)
            assert (down.value.code, down.value.retry_after) == ("store_unavailable", 5.0)
            assert waits == [0.05, 0.05]  # Retry-After: 5, capped at max_backoff_s
            assert hub.metrics.get("twinsync_hub_api_refused_total", status="503") == refused + 3
            assert [r.getMessage() for r in caplog.records if r.name == "twinsync.client"] == [
                "get_twin: 503 store_unavailable; try 2 of 3 in 0.05 s",
                "get_twin: 503 store_unavailable; try 3 of 3 in 0.05 s",
            ]
            with pytest.raises(UnavailableError):
                await asyncio.to_thread(client.request_access, ANN)
            assert hub.metrics.get("twinsync_hub_api_refused_total", status="503") == refused + 4
            assert len(waits) == 2  # not retried
        finally:
            started: list[float] = []

            def start_influx(wait: float) -> None:
                started.append(wait)
                if influxd.running:
                    return
                influxd.start()

            back = Client(
                hub.api_url, env.brand, api_key=env.token, retry=policy, sleep=start_influx
            )
            with pytest.raises(NotFoundError) as gone:
                await asyncio.to_thread(back.get_twin, UNKNOWN_TWIN)
        assert gone.value.code == "twin_not_found"
        assert len(started) == 1
        assert all(env.token not in r.getMessage() for r in caplog.records)
