"""Fuzzing: 100,000+ generated payloads through the decoder and the verify path, and
10,000+ generated requests through the API. Nothing crashes, nothing changes, every
reject is counted.

Payloads come from seeded generators (so a failure replays) and from hypothesis:
random bytes, mutations of valid signed envelopes (bit flips, cuts, splices), and
envelopes *correctly signed by a provisioned device* around generated bodies (a buggy or
compromised device), which is what reaches the schema checks behind the signature. Sealed
envelopes get the same treatment: mutated on the wire (the signature stops them), and
mutated *then re-signed* by an authentic device, which is what reaches the decryption.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import string
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from _fakes import FakeDevice, get_json, now_hlc
from hub_env import HubEnv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_hub import SCOPES, ApiKeys, Hub, LimitSettings, Registry
from cloud_hub.api import route_scopes
from cloud_hub.ingest import Accepted, Incoming, Rejected, ReplayWindows, Verifier
from protocol import (
    BodySealer,
    BoxPrivateKey,
    Envelope,
    SigningKey,
    SystemClock,
    open_envelope,
    packb,
    pseudonymize,
    seal,
)

BRAND, DEVICE = "fuzz", "dev-0"
TOPIC = f"ts/v1/{BRAND}/{DEVICE}/delta"
TWIN = pseudonymize(b"k" * 32, 1, "someone")
HUB_BOX = BoxPrivateKey.generate()
SEALER = BodySealer(BoxPrivateKey.generate(), HUB_BOX.public)


def _setup(tmp: Path) -> tuple[Verifier, SigningKey]:
    key = SigningKey.generate()
    registry = Registry(tmp / "registry.sqlite")
    registry.add_many([(BRAND, DEVICE, "coffee", key.public)])
    windows = ReplayWindows(4096)
    verifier = Verifier(
        LimitSettings(), registry=registry, clock=SystemClock(), windows=windows, box_keys=[HUB_BOX]
    )
    return verifier, key


@functools.cache
def _shared_verifier() -> tuple[Verifier, SigningKey]:
    return _setup(Path(tempfile.mkdtemp(prefix="twinsync-fuzz-")))


def _signed(
    key: SigningKey,
    body: bytes,
    *,
    kind: str = "delta",
    seq: int = 1,
    sealer: BodySealer | None = None,
) -> bytes:
    env = Envelope(
        kind=kind,  # type: ignore[arg-type]
        brand=BRAND,
        device=DEVICE,
        seq=seq,
        kid=key.kid,
        sent_ms=now_hlc() >> 16,
        body=body,
    )
    return seal(env if sealer is None else sealer.seal(env), key)


def _resigned(key: SigningKey, data: bytes, body: bytes) -> bytes:
    """``data``'s envelope with ``body`` swapped in, signed again by the authentic key."""
    env = open_envelope(data).envelope
    return seal(Envelope(**{**{f: getattr(env, f) for f in _FIELDS}, "body": body}), key)


_FIELDS = ("kind", "brand", "device", "seq", "kid", "sent_ms", "body", "version")


def _valid_delta(rng: random.Random) -> bytes:
    ops = [[now_hlc(-rng.randrange(1000), i), "coffee.brews_total", rng.randrange(1, 99)]
           for i in range(rng.randrange(1, 5))]  # fmt: skip
    return packb({"t": [[TWIN, ops]]})


def _junk(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value: the shapes a confused device might send."""
    pick = rng.randrange(12 if depth < 5 else 7)
    if pick == 0:
        return rng.randrange(-(2**63), 2**64)
    if pick == 1:
        return rng.choice([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, rng.random()])
    if pick == 2:
        return "".join(rng.choices(string.printable + "é€\x00", k=rng.randrange(0, 80)))
    if pick == 3:
        return rng.randbytes(rng.randrange(0, 80))
    if pick == 4:
        return rng.choice([None, True, False])
    if pick == 5:
        return rng.choice(["coffee.brews_total", "coffee.strength", "tv.genre", TWIN, "t"])
    if pick == 6:
        return now_hlc(rng.randrange(-(10**9), 10**9))
    if pick in (7, 8):
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    if pick == 9:
        return {"t": [[rng.choice([TWIN, _junk(rng, depth + 1)]), [_junk(rng, depth + 1)]]]}
    return {str(_junk(rng, 5))[:20]: _junk(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 2:
            buf[rng.randrange(len(buf) + 1) : 0] = rng.randbytes(rng.randrange(1, 16))
        elif buf:
            i, j = sorted(rng.randrange(len(buf)) for _ in range(2))
            buf[i:j] = buf[i:j][::-1]
    return bytes(buf)


def _check(verifier: Verifier, seen: Counter[str], topic: str, payload: bytes) -> None:
    result = verifier.verify(Incoming(topic, payload, 1, 1, now_hlc() >> 16))
    assert isinstance(result, Accepted | Rejected)
    if isinstance(result, Rejected):
        assert result.reason
        assert len(result.reason) <= 64
        seen[result.reason] += 1
    else:
        seen["accepted"] += 1


def test_100k_payloads_through_the_decoder_and_verifier(tmp_path: Path) -> None:
    verifier, key = _setup(tmp_path)
    rng = random.Random(20261123)
    seen: Counter[str] = Counter()
    valid = [_signed(key, _valid_delta(rng), seq=i + 1) for i in range(50)]
    topics = [TOPIC, f"ts/v1/{BRAND}/dev-1/delta", f"ts/v1/{BRAND}/{DEVICE}/status", "x/y", ""]
    for _ in range(25_000):  # random bytes
        _check(verifier, seen, TOPIC, rng.randbytes(rng.randrange(0, 600)))
    for _ in range(35_000):  # mutated valid envelopes
        _check(verifier, seen, TOPIC, _mutate(rng, rng.choice(valid)))
    for i in range(30_000):  # authentic sender, generated bodies
        body = packb(_junk(rng)) if i % 3 else _mutate(rng, _valid_delta(rng))
        kind = "delta" if i % 5 else rng.choice(["status", "ack", "delta"])
        _check(verifier, seen, TOPIC, _signed(key, body, kind=kind, seq=rng.randrange(10**6)))
    for _ in range(10_000):  # valid payloads on the wrong topics
        _check(verifier, seen, rng.choice(topics), rng.choice(valid))
    assert sum(seen.values()) == 100_000
    assert seen["accepted"] < 12_000  # only untouched valid deltas on their own topic pass
    assert len(seen) >= 8, seen  # many different checks were reached, not one wall
    # Verification changes nothing: no seq was marked as written.
    assert verifier.windows.high(BRAND, DEVICE) is None


def test_sealed_payloads_through_the_verifier(tmp_path: Path) -> None:
    """30,000 sealed envelopes: untouched ones open, every other one is refused with a
    reason, none crashes, none is marked as written."""
    verifier, key = _setup(tmp_path)
    rng = random.Random(20261124)
    seen: Counter[str] = Counter()
    valid = [_signed(key, _valid_delta(rng), seq=i + 1, sealer=SEALER) for i in range(50)]
    for data in valid:
        _check(verifier, seen, TOPIC, data)
    assert seen == Counter(accepted=50)
    stranger = BodySealer(BoxPrivateKey.generate(), BoxPrivateKey.generate().public)
    # A new device box key (what a wiped outbox makes) is as good as the old one.
    rewiped = BodySealer(BoxPrivateKey.generate(), HUB_BOX.public)
    for _ in range(8_000):  # mutated on the wire: the signature stops them
        _check(verifier, seen, TOPIC, _mutate(rng, rng.choice(valid)))
    for _ in range(10_000):  # sealed body mutated, re-signed by the device: reaches the AEAD
        data = rng.choice(valid)
        body = open_envelope(data).envelope.body
        _check(verifier, seen, TOPIC, _resigned(key, data, _mutate(rng, body)))
    for i in range(8_000):  # authentic device seals junk: reaches the schema checks
        body = packb(_junk(rng)) if i % 3 else _mutate(rng, _valid_delta(rng))
        sealer = SEALER if i % 7 else rng.choice([stranger, rewiped])
        kind = "delta" if i % 5 else "status"
        seq = rng.randrange(10**6)
        _check(verifier, seen, TOPIC, _signed(key, body, kind=kind, seq=seq, sealer=sealer))
    for _ in range(3_950):  # valid sealed payloads on the wrong topics
        _check(verifier, seen, rng.choice([f"ts/v1/{BRAND}/dev-1/delta", "x/y", ""]), valid[0])
    assert sum(seen.values()) == 30_000
    for reason in ("seal_tag", "bad_seal", "unknown_box_key", "signature", "schema"):
        assert seen[reason], (reason, seen)
    assert verifier.windows.high(BRAND, DEVICE) is None


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    body=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats()
        | st.text(max_size=40)
        | st.binary(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=30,
    )
)
def test_hypothesis_bodies_from_an_authentic_device(body: Any) -> None:
    verifier, key = _shared_verifier()
    seen: Counter[str] = Counter()
    _check(verifier, seen, TOPIC, _signed(key, packb(body)))
    _check(verifier, seen, TOPIC, _signed(key, packb({"t": [[TWIN, [body]]]})))
    _check(verifier, seen, TOPIC, _signed(key, packb(body), kind="status"))
    _check(verifier, seen, TOPIC, _signed(key, packb(body), sealer=SEALER))


_JUNK = ["", "x", "..", "%00", "%2e%2e%2f", "a" * 300, "1-" + "0" * 32, "segment-coffee",
         "-1", "99999999999999999999", "é", "%ff", "other"]  # fmt: skip
_PARAMS = ("twin", "name", "version", "cohort", "id", "key_id", "module", "rule", "experiment")
_QUERY_KEYS = ["product", "field", "start", "end", "every", "limit", "since", "after", "x"]
_QUERY_VALUES = [*_JUNK, "coffee", "1h", "0", "1795000000000"]
_BODIES = [b"", b"{", b"[]", b'{"subject": 1}', b'{"subject": "ann"}', b"\xff" * 64,
           b'{"model": "segment-coffee@1", "target": {"all": true}}',
           b'{"devices": ["dev-0"]}', b'{"name": "x", "scopes": ["admin"]}']  # fmt: skip
_TYPES = ["application/json", "multipart/form-data; boundary=x", "text/plain"]


def _fuzz_request(
    rng: random.Random, hub: Hub, brand: str, routes: list[str]
) -> tuple[str, str, dict[str, Any]]:
    method = rng.choice(["GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
    if rng.random() < 0.85:
        brands = [brand, brand, "other", "BAD!", "%20"]
        params = {p: rng.choice(_JUNK) or "x" for p in _PARAMS}
        path = rng.choice(routes).format(brand=rng.choice(brands), **params)
    else:
        path = "/" + "/".join(rng.choice(_JUNK) or "v1" for _ in range(rng.randrange(1, 7)))
    query = "&".join(
        f"{rng.choice(_QUERY_KEYS)}={rng.choice(_QUERY_VALUES)}" for _ in range(rng.randrange(0, 4))
    )
    kw: dict[str, Any] = {}
    if method in ("POST", "PUT", "PATCH"):
        kw["data"] = rng.choice(_BODIES)
        kw["headers"] = {"Content-Type": rng.choice(_TYPES)}
    return method, hub.api_url + path + (f"?{query}" if query else ""), kw


async def test_10k_api_requests_change_nothing_and_every_refusal_is_counted(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    twin = device.twin("ann")
    device.publish(device.delta(1, {twin: [(now_hlc(), "coffee.brews_total", 3)]}))
    await device.wait_acked({1})
    keys = ApiKeys(hub_env.config.registry.path)
    _, foreign = keys.create("other", "fuzz", SCOPES)
    _, reader = keys.create(hub_env.brand, "fuzz-read", ["read"])
    assert hub._runner is not None
    routes = sorted({path for _m, path in route_scopes(hub._runner.app)})
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}"
    snapshot_paths = ("twins", f"twins/{twin}", "models", "rollouts", "keys", "devices")

    async def snapshot() -> dict[str, Any]:
        out = {p: await get_json(f"{base}/{p}", token=hub_env.token) for p in snapshot_paths}
        for d in out["devices"]["devices"]:
            d.pop("last_seen_ms", None)
        out["points"] = hub_env.points()
        return out

    before = await snapshot()
    refused_before = hub.metrics.get("twinsync_hub_api_refused_total")
    rng = random.Random(7)
    statuses: Counter[int] = Counter()
    tokens = [None, "tsk_junk", foreign, reader, reader]
    semaphore = asyncio.Semaphore(8)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        method, url, kw = _fuzz_request(rng, hub, hub_env.brand, routes)
        token = tokens[i % len(tokens)]
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with semaphore, session.request(method, url, headers=headers, **kw) as r:
            if "stream" in url and r.status == 200:
                pass  # a live stream answered: the guard let a reader in; do not wait on it
            else:
                await r.read()
            statuses[r.status] += 1
            assert r.status < 500, (method, url, r.status)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(session, i) for i in range(10_000)))
    assert sum(statuses.values()) == 10_000
    refused = sum(n for status, n in statuses.items() if status >= 400)
    assert refused > 5_000
    after = await snapshot()
    keys_after = after.pop("keys")
    assert after == {k: v for k, v in before.items() if k != "keys"}
    assert keys_after == before["keys"]
    # Every refusal is counted (the snapshot's own requests were all answered 200).
    assert hub.metrics.get("twinsync_hub_api_refused_total") - refused_before == refused
