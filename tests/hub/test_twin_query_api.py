"""``GET /v1/brands/{brand}/twins?where=&sort=&limit=&after=&fields=`` on a real hub,
mosquitto and InfluxDB, with the shared state on SQLite and PostgreSQL.

Forty twins are sent by two devices (a counter from both, scores, segments, a text and a
boolean field, a second product for some, last seen an hour apart); every filter the
language has is checked against the same predicate computed in Python over what was
sent, paging seven at a time through the cursor; every sort gives the expected order;
``count`` agrees. Then the attacks: SQL in values and names, huge and deeply nested
queries, unknown fields, tampered cursors, another brand's key, a device's credentials,
no key, a key without ``read``, a replayed request: each refused with a clear error (or
answered as a plain value that matches nothing) and the index unchanged; another
brand's twins in the same store never appear.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from _fakes import FakeDevice, get_json, now_hlc
from hub_env import HubEnv, both_stores

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.api import COUNT_CAP, MAX_DEPTH, MAX_TERMS, MAX_WHERE
from cloud_hub.store import TwinIndex
from protocol import HLC

N = 40
HOUR = 3_600_000
MODES = ("eco", "heat", 'o\'brien "x"')


def row(i: int) -> dict[str, Any]:
    """What twin i is sent (the expectation every check computes from)."""
    out: dict[str, Any] = {
        "coffee.churn_risk": i / N,
        "coffee.segment": i % 4,
        "coffee.brews_total": i + (100 if i % 2 == 0 else 0),  # dev-1 adds 100 to evens
        "thermostat.mode": MODES[i % 3],
        "seen_h": i,  # hours before now
    }
    if i % 5 == 0:
        out["tv.power"] = i % 10 == 0
        out["tv.churn_risk"] = 0.9
    return out


class Scenario:
    def __init__(self, hub: Hub, env: HubEnv, twins: list[str]) -> None:
        self.hub, self.env, self.twins = hub, env, twins
        self.rows = {t: row(i) for i, t in enumerate(twins)}

    def url(self, **query: object) -> str:
        q = urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        return f"{self.hub.api_url}/v1/brands/{self.env.brand}/twins" + (f"?{q}" if q else "")

    async def get(self, status: int = 200, token: str | None = None, **query: object) -> Any:
        return await get_json(self.url(**query), status, token or self.env.token)

    async def all_pages(self, **query: object) -> tuple[list[str], list[dict[str, Any]]]:
        """Every page, following ``next``; the twin ids in order and the first answer."""
        first = body = await self.get(**query)
        got = list(body["twins"])
        while "next" in body:
            body = await get_json(self.hub.api_url + body["next"], token=self.env.token)
            got += body["twins"]
        return got, first

    def where(self, test: Callable[[dict[str, Any]], bool]) -> list[str]:
        return sorted(t for t, r in self.rows.items() if test(r))


@pytest.fixture
async def scenario(hub: Hub, hub_env: HubEnv) -> Any:
    devices = [
        FakeDevice(hub_env.bundles[d].parent, hub_env.brand, d, hub_env.services.mosquitto.port)
        for d in ("dev-0", "dev-1")
    ]
    try:
        twins = [devices[0].twin(f"customer-{i}@example.com") for i in range(N)]
        for i, twin in enumerate(twins):
            r = row(i)
            at = now_hlc(-r["seen_h"] * HOUR - 1000)
            ops: list[tuple[int, str, object]] = [
                (at, "coffee.churn_risk", r["coffee.churn_risk"]),
                (at, "coffee.segment", r["coffee.segment"]),
                (at, "coffee.brews_total", i),
                (at, "thermostat.mode", r["thermostat.mode"]),
            ]
            if "tv.power" in r:
                ops += [(at, "tv.power", r["tv.power"]), (at, "tv.churn_risk", 0.9)]
            devices[0].publish(devices[0].delta(i + 1, {twin: ops}))
            if i % 2 == 0:
                early = now_hlc(-(r["seen_h"] + 1) * HOUR)
                devices[1].publish(
                    devices[1].delta(i + 1, {twin: [(early, "coffee.brews_total", 100)]})
                )
        await devices[0].wait_acked(set(range(1, N + 1)))
        await devices[1].wait_acked({i + 1 for i in range(0, N, 2)})
        yield Scenario(hub, hub_env, sorted(twins, key=twins.index))
    finally:
        for d in devices:
            d.close()


FILTERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("coffee.churn_risk > 0.7", lambda r: r["coffee.churn_risk"] > 0.7),
    ("coffee.churn_risk <= 0.25", lambda r: r["coffee.churn_risk"] <= 0.25),
    ("coffee.segment in (1, 3)", lambda r: r["coffee.segment"] in (1, 3)),
    ("coffee.segment != 2", lambda r: r["coffee.segment"] != 2),
    ("not coffee.segment = 2", lambda r: r["coffee.segment"] != 2),
    ("coffee.brews_total >= 100", lambda r: r["coffee.brews_total"] >= 100),
    ("thermostat.mode = eco", lambda r: r["thermostat.mode"] == "eco"),
    ("thermostat.mode = 'o\\'brien \"x\"'", lambda r: r["thermostat.mode"] == MODES[2]),
    ("thermostat.mode < 'f'", lambda r: r["thermostat.mode"] < "f"),
    ("tv.power = true", lambda r: r.get("tv.power") is True),
    ("tv.power != true", lambda r: r.get("tv.power") is False),
    ("not tv.power = true", lambda r: r.get("tv.power") is not True),
    ("product = tv", lambda r: "tv.power" in r),
    (
        "product != tv and coffee.segment = 0",
        lambda r: "tv.power" not in r and r["coffee.segment"] == 0,
    ),
    ("last_seen > -7h", lambda r: r["seen_h"] < 7),
    ("LAST_SEEN > -7h", lambda r: r["seen_h"] < 7),
    (
        "last_seen <= -10h or coffee.segment = 1",
        lambda r: r["seen_h"] >= 10 or r["coffee.segment"] == 1,
    ),
    ("churn_risk >= 0.9", lambda r: max(r["coffee.churn_risk"], r.get("tv.churn_risk", 0)) >= 0.9),
    (
        "not churn_risk < 0.5",
        lambda r: max(r["coffee.churn_risk"], r.get("tv.churn_risk", 0)) >= 0.5,
    ),
    (
        "(coffee.segment = 0 or coffee.segment = 3) and not (product = tv or last_seen > -5h)",
        lambda r: r["coffee.segment"] in (0, 3) and not ("tv.power" in r or r["seen_h"] < 5),
    ),
    ("tag has weekend_heavy", lambda r: False),
    ("first_seen > 2000-01-01T00:00:00Z", lambda r: True),
    ("first_seen < 2000-01-01", lambda r: False),
]


@both_stores
async def test_every_filter_pages_through_exactly_its_matches(scenario: Scenario) -> None:
    """Each filter, paged seven at a time, lists exactly the twins whose sent values
    satisfy it, in twin id order, each once; ``count`` says how many."""
    everyone, body = await scenario.all_pages(limit=7)
    assert everyone == sorted(scenario.twins)
    assert body["count"] == N
    assert body["count_exact"] is True
    for where, test in FILTERS:
        got, first = await scenario.all_pages(where=where, limit=7)
        assert got == scenario.where(test), where
        assert first["count"] == len(got), where


SORTS: list[tuple[str, Callable[[str, dict[str, Any]], Any]]] = [
    # (sort, the value it orders by; None: the twin has none)
    ("-coffee.churn_risk", lambda t, r: r["coffee.churn_risk"]),
    ("coffee.segment", lambda t, r: r["coffee.segment"]),
    ("-last_seen", lambda t, r: -r["seen_h"]),
    ("-churn_risk", lambda t, r: max(r["coffee.churn_risk"], r.get("tv.churn_risk", 0))),
    ("churn_risk", lambda t, r: max(r["coffee.churn_risk"], r.get("tv.churn_risk", 0))),
    ("thermostat.mode", lambda t, r: r["thermostat.mode"]),
    ("-thermostat.mode", lambda t, r: r["thermostat.mode"]),
    ("-twin", lambda t, r: t),
    ("tv.power", lambda t, r: r.get("tv.power")),
    ("-tv.power", lambda t, r: r.get("tv.power")),
]


@both_stores
async def test_sorts_give_the_order_and_pages_resume_it(scenario: Scenario) -> None:
    """Sorted by a field, the twin's own columns or its id (``-`` descending), paged
    three at a time: the expected order (ties by twin id in the same direction), every
    twin once; twins without the sort field come after the others, by id."""
    for sort, value in SORTS:
        got, _ = await scenario.all_pages(sort=sort, limit=3)
        values = {t: value(t, r) for t, r in scenario.rows.items()}
        having = [t for t in scenario.twins if values[t] is not None]
        lacking = sorted(t for t in scenario.twins if values[t] is None)
        # ties are broken by twin id, in the sort's direction
        ordered = sorted(having, key=lambda t: (values[t], t), reverse=sort.startswith("-"))
        assert got == ordered + lacking, sort
    # A filter and a sort together.
    got, body = await scenario.all_pages(
        where="coffee.segment = 1", sort="-coffee.churn_risk", limit=2
    )
    want = sorted(
        scenario.where(lambda r: r["coffee.segment"] == 1),
        key=lambda t: -scenario.rows[t]["coffee.churn_risk"],
    )
    assert got == want
    assert body["count"] == len(want)


async def test_items_say_what_the_index_holds_of_each_twin(scenario: Scenario) -> None:
    body = await scenario.get(where="product = tv", fields="coffee.brews_total,tv.power", limit=100)
    assert body["items"]
    assert [i["twin"] for i in body["items"]] == body["twins"]
    for item in body["items"]:
        r = scenario.rows[item["twin"]]
        assert set(item) == {
            "twin",
            "first_seen_ms",
            "last_seen_ms",
            "churn_risk",
            "products",
            "devices",
            "segments",
            "tags",
            "fields",
        }
        assert item["products"] == ["coffee", "thermostat", "tv"]
        assert item["segments"] == {"coffee": r["coffee.segment"]}
        assert item["churn_risk"] == max(r["coffee.churn_risk"], 0.9)
        assert item["fields"] == {
            "coffee.brews_total": r["coffee.brews_total"],
            "tv.power": r["tv.power"],
        }
        assert item["devices"] == (
            ["dev-0", "dev-1"] if r["coffee.brews_total"] >= 100 else ["dev-0"]
        )
        assert item["tags"] == []
        assert item["first_seen_ms"] <= item["last_seen_ms"]
        assert abs(item["last_seen_ms"] - (HLC.unpack(now_hlc()).ms - r["seen_h"] * HOUR)) < 120_000


async def test_the_plain_listing_pages_by_twin_id_as_before(scenario: Scenario) -> None:
    """Without where or sort: twin ids in order, ``after`` the last id of a page, and a
    ``next`` URL of the same form the route always gave."""
    ordered = sorted(scenario.twins)
    body = await scenario.get(limit=10)
    assert body["twins"] == ordered[:10]
    assert body["next"] == f"/v1/brands/{scenario.env.brand}/twins?limit=10&after={ordered[9]}"
    body = await scenario.get(limit=10, after=ordered[9])
    assert body["twins"] == ordered[10:20]
    body = await scenario.get(limit=100, after=ordered[-1])
    assert body["twins"] == []
    assert "next" not in body


BAD_WHERE: list[tuple[str, str]] = [
    ("coffee.churn > 0.5", "character 1"),
    ("coffee.churn > 0.5", "did you mean coffee.churn_risk"),
    ("coffee.churn_risk > ", "character 21"),
    ("coffee.churn_risk > 'high'", "holds numbers"),
    ("thermostat.mode > 3", "holds text"),
    ("tv.power > true", "true or false"),
    ("(coffee.segment = 1", "close the parenthesis"),
    ("coffee.segment = 1)", "character 19"),
    ("coffee.segment = 1 coffee.segment = 2", "expected 'and', 'or'"),
    ("coffee.segment in ()", "holds numbers"),
    ("coffee.segment in (1, 2", "close the 'in' list"),
    ("product = toaster", "expected a product"),
    ("product > coffee", "compared with = or !="),
    ("tag has", "expected a tag name"),
    ("tag is x", "expected 'has'"),
    ("last_seen > yesterday", "expected a time"),
    ("last_seen > 2026-13-45", "not a date"),
    ("churn_risk > high", "compared with a number"),
    ("coffee.churn_risk > 1e999", "finite"),
    ("coffee.segment = 1 and", "expected a condition"),
    ("coffee.segment = 1; DROP TABLE twin_index", "unexpected character ';'"),
    ("coffee.segment = 1 -- comment", "character 20 ('-- comment'): unexpected character '-'"),
    ("coffee.segment = 1 /* x */", "unexpected character '/'"),
    ("   ", "where is empty"),
    ("café = 1", "printable ASCII"),
    ("x" * (MAX_WHERE + 1), f"at most {MAX_WHERE}"),
    ("(" * (MAX_DEPTH + 1) + "coffee.segment = 1" + ")" * (MAX_DEPTH + 1), "nested more than"),
    ("not " * (MAX_DEPTH + 1) + "coffee.segment = 1", "nested more than"),
    (" or ".join(["coffee.segment = 1"] * (MAX_TERMS + 1)), f"more than {MAX_TERMS} conditions"),
    ("coffee.segment in (" + ",".join(["1"] * 101) + ")", "more than 100 values"),
    ("thermostat.mode = '" + "x" * 300 + "'", "at most 256 characters"),
]


async def test_bad_queries_are_refused_saying_where_and_nothing_changes(scenario: Scenario) -> None:
    before = await scenario.all_pages(limit=1000)
    for where, says in BAD_WHERE:
        body = await scenario.get(400, where=where)
        assert body["error"]["code"] == "bad_where", where
        assert says in body["error"]["message"], (where, body["error"]["message"])
    refused = [
        ({"sort": "coffee.nothing"}, "bad_sort"),
        ({"sort": "twin; DROP TABLE twin_index"}, "bad_sort"),
        ({"fields": "coffee.segment,coffee.nothing"}, "bad_fields"),
        ({"fields": ",".join(["coffee.segment"] * 2)}, "bad_fields"),
        (
            {
                "fields": ",".join(
                    f"coffee.f_share_{x}" for x in "abcdefghijklmnopqrstuvwxyz0123456789"
                )
            },
            "bad_fields",
        ),
        ({"limit": 10_001}, "bad_limit"),
        ({"limit": 0}, "bad_limit"),
        ({"after": "not-a-twin"}, "bad_after"),
        ({"sort": "-churn_risk", "after": "c1.garbage"}, "bad_after"),
        ({"sort": "-churn_risk", "after": scenario.twins[0]}, "bad_after"),
    ]
    for query, code in refused:
        body = await scenario.get(400, **query)
        assert body["error"]["code"] == code, query
    # A cursor of one sort does not resume another.
    page = await scenario.get(sort="-coffee.churn_risk", limit=2)
    cursor = urllib.parse.parse_qs(urllib.parse.urlparse(page["next"]).query)["after"][0]
    body = await scenario.get(400, sort="coffee.churn_risk", after=cursor)
    assert body["error"]["code"] == "bad_after"
    assert "sort=coffee.churn_risk" in body["error"]["message"]
    assert await scenario.all_pages(limit=1000) == before


async def test_sql_in_values_and_names_is_data_or_refused(scenario: Scenario) -> None:
    """Quotes, comments and statements in a text value are matched as text (nothing
    matches them); in names or operators they are refused; the index is unchanged and
    no other brand's twin appears."""
    other = "zz" + scenario.env.brand
    with scenario.env.state() as state:
        TwinIndex(state=state).apply(
            [(other, "1-" + "e" * 32, "d", "coffee.segment", HLC(1, 0).pack(), 1)]
        )
    before = await scenario.all_pages(limit=1000)
    for value in (
        "x' OR '1'='1",
        "x\\' OR 1=1 --",
        "'; DELETE FROM twin_index; --",
        "\") OR brand = 'zz",
    ):
        quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        body = await scenario.get(where=f"thermostat.mode = {quoted}")
        assert body["twins"] == [], value
        assert body["count"] == 0, value
    for where in ("coffee.segment = 1 or 1 = 1", "brand = 'x'", "twin_index.brand = 'x'"):
        body = await scenario.get(400, where=where)
        assert body["error"]["code"] == "bad_where"
    everyone, body = await scenario.all_pages(where="coffee.segment >= 0", limit=1000)
    assert everyone == sorted(scenario.twins)
    assert await scenario.all_pages(limit=1000) == before
    assert COUNT_CAP >= N


async def test_only_the_brands_own_read_key_may_query(
    scenario: Scenario, hub_env: HubEnv, tmp_path: Any
) -> None:
    """Another brand's key (403 wrong_brand), a device's broker credentials and a
    made-up key (401), no key (401), a key without ``read`` (403 missing_scope); a
    replayed request gets the same answer and changes nothing."""
    env = hub_env
    with env.state() as state:
        provision_devices(
            state,
            env.config.keys.secrets_dir,
            "zzother",
            [("o-1", "coffee")],
            tmp_path / "other",
            "127.0.0.1",
            env.services.mosquitto.port,
        )
        keys = ApiKeys(state)
        _k, other = keys.create("zzother", "x", SCOPES)
        _k, no_read = keys.create(env.brand, "x", ["privacy", "admin", "write"])
    device_password = (env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    where = {"where": "coffee.segment = 1"}
    cases = [
        (other, 403, "wrong_brand"),
        (device_password, 401, "bad_key"),
        ("tsk_" + "0" * 12 + "_" + "0" * 43, 401, "bad_key"),
        (no_read, 403, "missing_scope"),
    ]
    for token, status, code in cases:
        body = await get_json(scenario.url(**where), status, token)
        assert body["error"]["code"] == code, code
    async with aiohttp.ClientSession() as s, s.get(scenario.url(**where)) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "unauthenticated"
    first = await scenario.get(**where)
    again = await scenario.get(**where)
    assert first == again
    assert first["count"] == N // 4
