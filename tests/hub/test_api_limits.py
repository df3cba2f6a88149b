"""API input and read limits (issue 9, items 5 and 9), on a real hub, InfluxDB and broker.

- history: the bucket count is computed before InfluxDB is asked and capped; raw points
  come in pages with a cursor; the largest allowed requests work; /healthz answers while
  the largest one runs;
- every number in a query or path is ASCII digits within bounds, else 400 (never a 5xx,
  never InfluxDB's own text): a sweep over every route of the running hub's router and
  every query parameter the API reads, with hostile values;
- InfluxDB's failures: unavailable is 503 without its text; a query it refuses is not
  reported as "unavailable";
- a malformed multipart model upload is 400.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from hub_env import HubEnv, make_config

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.store import MAX_BUCKETS, MAX_PAGE
from twinsync.services import LocalServices

_TWIN = "1-" + "ab" * 16
_HOUR_MS = 3_600_000
# An hour, aligned to the second, well inside what the hub serves.
_END_MS = 1_700_000_000_000
_START_MS = _END_MS - _HOUR_MS

#: every query parameter the API reads (cloud_hub/api/_app.py, _twins.py, _guard.py,
#: _rollout_api.py)
_QUERY_PARAMS = (
    "where",
    "sort",
    "fields",
    "field",
    "start",
    "end",
    "every",
    "limit",
    "after",
    "product",
    "since",
    "sha256",
    "sig",
)
_HOSTILE = (
    "99999999999999999999999999",  # past int64
    "9223372036854775807",
    "-1",
    "-99999999999999",
    "1.5",
    "1e9",
    "NaN",
    "0x10",
    "１２",  # full-width digits: int() takes them
    "²",  # str.isdigit() takes it, int() does not
    "1_000",
    " 12 ",
    "12ms ",
    "1e9ms",
    "²h",
    "99999999999999999999d",
    "0ms",
    "'; DROP DATABASE x; --",
    '" OR 1=1',
    "coffee.churn_risk > 0 or 1=1; --",
    "(" * 200 + "coffee.strength = 1" + ")" * 200,
    "not " * 100 + "coffee.strength = 1",
    "\x00",
    "x" * 4000,
)
_PATH_PARAMS = {
    "twin": _TWIN,
    "name": "segment-coffee",
    "version": "1",
    "cohort": "beta",
    "id": "1",
    "key_id": "0" * 12,
    "module": "app.js",
    "rule": "trg_" + "0" * 12,
    "experiment": "exp-0123456789ab",
}
_HOSTILE_PATH = {
    "experiment": ("exp-" + "0" * 3000, "../../x", "exp-０１２３４５６７８９ab"),
    "twin": ("１-" + "0" * 32, "x" * 3000),
    "version": ("²", "１", "99999999999999999999999", "-1"),
    "id": ("²", "１２", "99999999999999999999999", "-1"),
    "name": ("x" * 3000,),
    "cohort": ("x" * 3000, "²"),
    "key_id": ("²" * 12,),
    "module": ("x" * 3000, "..", "%2e%2e%2f_app.py", "app.js\x00"),
    "rule": ("x" * 3000, "²", "trg_%2e%2e", "trg_" + "０" * 12),
}


async def _get(
    session: aiohttp.ClientSession, url: str, token: str, **params: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(url, params=params, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


def _history_url(hub: Hub, env: HubEnv) -> str:
    return f"{hub.api_url}/v1/brands/{env.brand}/twins/{_TWIN}/history"


def _line(env: HubEnv, device: str, field: str, value: int, ts_ns: int) -> str:
    return f"twin,brand={env.brand},device={device},twin={_TWIN} {field}={value}i {ts_ns}"


async def test_every_1ms_over_an_hour_is_refused_naming_the_cap(hub: Hub, hub_env: HubEnv) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await _get(
            session,
            _history_url(hub, hub_env),
            hub_env.token,
            field="coffee.brews_total",
            start=str(_START_MS),
            end=str(_END_MS),
            every="1ms",
        )
    assert status == 400, body
    assert body["error"]["code"] == "too_many_buckets"
    message = body["error"]["message"]
    # The count, the cap and what to ask instead: a larger every or a shorter range.
    assert "3600000 buckets" in message
    assert f"at most {MAX_BUCKETS}" in message
    assert "every=361ms or larger" in message
    assert "at most 9999 ms" in message
    # The advice works: the suggested every fits.
    async with aiohttp.ClientSession() as session:
        status, body = await _get(
            session,
            _history_url(hub, hub_env),
            hub_env.token,
            field="coffee.brews_total",
            start=str(_START_MS),
            end=str(_END_MS),
            every="361ms",
        )
    assert status == 200, body


async def test_the_largest_bucketed_request_works_and_healthz_answers_meanwhile(
    hub: Hub, hub_env: HubEnv
) -> None:
    """MAX_BUCKETS buckets of a counter written by 19 devices (19 x 10000 rows, just under
    the read cap): answered in full, and /healthz answers while it runs."""
    every_ms = 360
    start_ms = _START_MS // every_ms * every_ms  # aligned: exactly MAX_BUCKETS buckets
    end_ms = start_ms + MAX_BUCKETS * every_ms
    devices = [f"d{i:02d}" for i in range(19)]
    lines = [
        _line(hub_env, device, "coffee.brews_total", k + 1, (start_ms + k * 9_000) * 1_000_000)
        for device in devices
        for k in range(400)
    ]
    hub_env.write(lines)
    async with aiohttp.ClientSession() as session:
        history = asyncio.create_task(
            _get(
                session,
                _history_url(hub, hub_env),
                hub_env.token,
                field="coffee.brews_total",
                start=str(start_ms),
                end=str(end_ms),
                every=f"{every_ms}ms",
            )
        )
        answered = 0
        while not history.done():
            async with session.get(f"{hub.api_url}/healthz") as resp:
                assert resp.status == 200
                answered += 1 if not history.done() else 0
            await asyncio.sleep(0.01)
        status, body = await history
    assert status == 200, body
    assert answered >= 1
    points = body["points"]
    assert len(points) == MAX_BUCKETS
    # Every device's last cumulative value, summed: 400 each at the end.
    assert points[-1] == {
        "time_ms": end_ms - every_ms,
        "value": 400 * len(devices),
        "devices": len(devices),
    }


async def test_a_counter_with_too_many_devices_for_the_buckets_is_refused(
    hub: Hub, hub_env: HubEnv
) -> None:
    """Buckets times devices past the read cap: 400 asking for a larger every or a
    shorter range, before the hub holds the rows."""
    devices = [f"e{i:02d}" for i in range(21)]
    hub_env.write(
        [
            _line(hub_env, d, "coffee.brews_total", 1, (_START_MS + 1000) * 1_000_000)
            for d in devices
        ]
    )
    start_ms = _START_MS // 360 * 360
    async with aiohttp.ClientSession() as session:
        status, body = await _get(
            session,
            _history_url(hub, hub_env),
            hub_env.token,
            field="coffee.brews_total",
            start=str(start_ms),
            end=str(start_ms + MAX_BUCKETS * 360),
            every="360ms",
        )
    assert status == 400, body
    assert body["error"]["code"] == "too_many_points"
    assert "larger every or a shorter range" in body["error"]["message"]


async def test_raw_history_pages_cover_every_point_once(hub: Hub, hub_env: HubEnv) -> None:
    """More points than the largest page, with two devices writing at the same instant
    (a tie at a page boundary): the pages, followed by their next links, hold every
    point exactly once, in (time, device) order."""
    lines = []
    expected = set()
    for k in range(MAX_PAGE + 500):
        ts = (_START_MS + k) * 1_000_000
        devices = ("a-1", "b-2") if k % 7 == 0 else ("a-1",)
        for device in devices:
            lines.append(_line(hub_env, device, "coffee.strength", k % 5 + 1, ts))
            expected.add((k + _START_MS, device))
    hub_env.write(lines)
    got: list[tuple[int, str]] = []
    pages = 0
    url: str | None = (
        f"{_history_url(hub, hub_env)}?field=coffee.strength&start={_START_MS}&end={_END_MS}"
        f"&limit={MAX_PAGE}"
    )
    async with aiohttp.ClientSession() as session:
        while url is not None:
            status, body = await _get(session, url, hub_env.token)
            assert status == 200, body
            assert len(body["points"]) <= MAX_PAGE
            got += [(p["time_ms"], p["device"]) for p in body["points"]]
            pages += 1
            url = f"{hub.api_url}{body['next']}" if "next" in body else None
        # A small page size splits a tie between two devices across pages.
        small: list[tuple[int, str]] = []
        url = (
            f"{_history_url(hub, hub_env)}?field=coffee.strength&start={_START_MS}"
            f"&end={_START_MS + 15}&limit=1"
        )
        while url is not None:
            status, body = await _get(session, url, hub_env.token)
            assert status == 200, body
            small += [(p["time_ms"], p["device"]) for p in body["points"]]
            url = f"{hub.api_url}{body['next']}" if "next" in body else None
    assert pages == 2
    assert len(got) == len(expected)
    assert set(got) == expected
    assert got == sorted(got)
    assert small == sorted(p for p in expected if p[0] < _START_MS + 15)


async def test_non_ascii_digits_and_out_of_range_numbers_are_400(hub: Hub, hub_env: HubEnv) -> None:
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}"
    history = {"field": "coffee.strength", "start": "1000", "end": "2000"}
    cases: list[tuple[str, dict[str, str], str]] = [
        (f"{base}/twins/{_TWIN}/history", {**history, "start": "１２"}, "bad_start"),
        (f"{base}/twins/{_TWIN}/history", {**history, "end": "1_000"}, "bad_end"),
        (f"{base}/twins/{_TWIN}/history", {**history, "end": " 2000 "}, "bad_end"),
        (f"{base}/twins/{_TWIN}/history", {**history, "end": "²"}, "bad_end"),
        (f"{base}/twins/{_TWIN}/history", {**history, "every": "²h"}, "bad_every"),
        (f"{base}/twins/{_TWIN}/history", {**history, "every": "１h"}, "bad_every"),
        (f"{base}/twins/{_TWIN}/history", {**history, "limit": "１"}, "bad_limit"),
        (f"{base}/twins/{_TWIN}/history", {**history, "after": "１-dev"}, "bad_after"),
        (f"{base}/twins/{_TWIN}/history", {**history, "end": "9" * 19}, "bad_end"),
        (f"{base}/twins", {"limit": "１０"}, "bad_limit"),
        (f"{base}/twins", {"limit": "0"}, "bad_limit"),
        (f"{base}/segments/changes", {"product": "coffee", "limit": "²"}, "bad_limit"),
        (f"{base}/segments/changes", {"product": "coffee", "start": "-5"}, "bad_start"),
        (f"{base}/segments/changes/stream", {"product": "coffee", "since": "１"}, "bad_since"),
        (f"{base}/audit", {"limit": "1e3"}, "bad_limit"),
    ]
    async with aiohttp.ClientSession() as session:
        for url, params, code in cases:
            status, body = await _get(session, url, hub_env.token, **params)
            assert (status, body["error"]["code"]) == (400, code), (url, params, body)
            assert "InfluxQL" not in json.dumps(body)
            assert "influx" not in json.dumps(body)


def _routes(hub: Hub) -> list[tuple[str, str]]:
    assert hub._runner is not None
    out = []
    for r in hub._runner.app.router.routes():
        path = r.resource.canonical if r.resource is not None else ""
        if r.method != "HEAD":
            out.append((r.method, path))
    return out


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, token: str, params: dict[str, str]
) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    kw: dict[str, Any] = {} if method in ("GET", "DELETE") else {"json": {}}
    async with session.request(method, url, params=params, headers=headers, **kw) as resp:
        if resp.content_type == "text/event-stream":
            return resp.status  # a stream that opened: leave it (the session closes it)
        body = await resp.read()
        assert b"InfluxQL" not in body, body[:300]
        assert b"InfluxDB query" not in body, body[:300]
        return resp.status


async def test_every_route_with_hostile_parameters_answers_without_a_5xx(
    hub: Hub, hub_env: HubEnv
) -> None:
    """Every route of the running hub's router, every query parameter the API reads,
    each hostile value; then every path parameter with hostile values. No 5xx."""
    routes = _routes(hub)
    assert len(routes) > 25
    fine = {"field": "coffee.strength", "product": "coffee"}
    failures: list[tuple[str, str, str, str, int]] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for method, template in routes:
            url = hub.api_url + template.format(brand=hub_env.brand, **_PATH_PARAMS)
            for name in _QUERY_PARAMS:
                for value in _HOSTILE:
                    params = {**fine, name: value}
                    status = await _call(session, method, url, hub_env.token, params)
                    if status >= 500:
                        failures.append((method, template, name, value[:20], status))
            for param, values in _HOSTILE_PATH.items():
                if f"{{{param}}}" not in template:
                    continue
                for value in values:
                    path = {**_PATH_PARAMS, param: value}
                    hostile = hub.api_url + template.format(brand=hub_env.brand, **path)
                    status = await _call(session, method, hostile, hub_env.token, {})
                    if status >= 500:
                        failures.append((method, template, param, value[:20], status))
    assert not failures, failures
    assert hub.metrics.get("twinsync_hub_api_refused_total", status="500") == 0
    assert hub.metrics.get("twinsync_hub_api_refused_total", status="503") == 0


async def test_a_malformed_multipart_upload_is_400(hub: Hub, hub_env: HubEnv) -> None:
    url = f"{hub.api_url}/v1/brands/{hub_env.brand}/models"
    headers = {"Authorization": f"Bearer {hub_env.token}"}
    bodies = {
        "a part header line over aiohttp's limit": (
            b"--b\r\nContent-Disposition: form-data; name=manifest" + b"x" * 20_000 + b"\r\n\r\n"
            b"{}\r\n--b--\r\n"
        ),
        "a header line without a colon": b"--b\r\nNoColon\r\n\r\n{}\r\n--b--\r\n",
        "a truncated body": b"--b\r\nContent-Disposition: form-data; name=manifest\r\n\r\n{",
        "no delimiter at all": b"x" * 100_000,
    }
    async with aiohttp.ClientSession() as session:
        for why, data in bodies.items():
            headers["Content-Type"] = "multipart/form-data; boundary=b"
            async with session.post(url, data=data, headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 400, (why, body)
                assert body["error"]["code"] == "bad_upload", (why, body)
        headers["Content-Type"] = "multipart/form-data"  # no boundary
        async with session.post(url, data=b"x", headers=headers) as resp:
            assert resp.status == 400


async def test_influxdb_unavailable_is_503_without_its_own_text(
    tmp_path: Path, own_services: LocalServices, unique: str
) -> None:
    brand = f"b{unique}"
    config = make_config(tmp_path, own_services, f"db{unique}", brand)
    _key, token = ApiKeys(config.registry.path).create(brand, "tests", SCOPES)
    # the brand's pseudonymization key, so that an erasure request gets to the store
    provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        brand,
        [("d-1", "coffee")],
        tmp_path / "bundles",
    )
    async with Hub(config) as hub:
        await hub.ready.wait()
        own_services.influxd.stop()
        url = f"{hub.api_url}/v1/brands/{brand}/twins/{_TWIN}/history"
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url,
                params={"field": "coffee.strength"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            body = await resp.json()
            assert resp.status == 503, body
            assert resp.headers["Retry-After"] == "5"
        assert body["error"] == {
            "code": "store_unavailable",
            "message": "the database is unavailable; retry later",
        }
        # A privacy request that reaches the store answers the same way (it used to
        # carry InfluxDB's own text in a 503).
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{hub.api_url}/v1/brands/{brand}/privacy/erasure",
                json={"subject": "alice@example.com"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            erasure = await resp.json()
            assert resp.status == 503, erasure
        assert erasure["error"]["code"] == "store_unavailable"
        assert "8086" not in erasure["error"]["message"]
        assert erasure["error"]["message"] == "the database is unavailable; retry later"


async def test_a_read_influxdb_refuses_as_too_large_is_400_not_unavailable(
    tmp_path: Path, unique: str
) -> None:
    """InfluxDB with a tiny max-select-buckets refuses the read: the answer says to ask
    for less (400), not that the store is unavailable (503), and carries none of its text."""
    services = LocalServices(tmp_path / "services")
    services.influxd.MAX_SELECT_BUCKETS = 100
    with services:
        brand = f"b{unique}"
        config = make_config(tmp_path, services, f"db{unique}", brand)
        _key, token = ApiKeys(config.registry.path).create(brand, "tests", SCOPES)
        env = HubEnv(config, {}, brand, services, token)
        env.write(
            [
                _line(env, "d-1", "coffee.strength", 1, (_START_MS + k) * 1_000_000)
                for k in range(200)
            ]
        )
        async with Hub(config) as hub, aiohttp.ClientSession() as session:
            status, body = await _get(
                session,
                _history_url(hub, env),
                token,
                field="coffee.strength",
                start=str(_START_MS),
                end=str(_END_MS),
                every="4s",  # 900 buckets: within the hub's cap, past this InfluxDB's
            )
            assert status == 400, body
            assert body["error"]["code"] == "query_too_large"
            assert "max-select" not in json.dumps(body)
            assert hub.metrics.get("twinsync_hub_api_refused_total", status="503") == 0
