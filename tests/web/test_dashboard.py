"""The brand dashboard in a real headless Chromium, on a real hub holding a simulated
fleet's data: every page renders that data (rows, SVG charts with points), with no
console error and no failed request, and its screenshot is a picture (PNG decoded, many
colours; saved in the test's tmp dir). Refusals are the API's, shown as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import Chromium, Page, Problem, png_colours
from dash_env import XSS, Dash


async def show(page: Page, dash: Dash, where: str, *, brand: str = "", token: str = "") -> str:
    """Open the dashboard at ``#where`` with a brand and key typed into its form (the
    first time) and wait for the page to finish: ``ready`` or ``error``."""
    if await page.evaluate("location.pathname") != "/dashboard/":
        await page.goto(f"{dash.url}/dashboard/#{where}")
        creds = json.dumps([brand or dash.brand, token or dash.token])
        await page.evaluate(
            f"""(() => {{ const [b, k] = {creds};
            const f = document.getElementById('key-form'); f.brand.value = b; f.key.value = k;
            f.querySelector('button[type=submit]').click(); }})()"""
        )
    else:
        await page.evaluate(
            "document.getElementById('page').dataset.state = 'stale'; "
            f"location.hash = {json.dumps(where)}"
        )
    state: str = await page.wait_for(
        "['ready', 'error'].includes(document.getElementById('page').dataset.state) "
        "&& document.getElementById('page').dataset.state"
    )
    return state


async def count(page: Page, selector: str) -> int:
    n: int = await page.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")
    return n


async def text(page: Page, selector: str) -> str:
    t: str = await page.evaluate(
        f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
    )
    return t


async def texts(page: Page, selector: str) -> list[str]:
    """The textContent of every element ``selector`` matches."""
    found: list[str] = await page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent)"
    )
    return found


async def numbers(page: Page, selector: str, name: str) -> list[float]:
    """The ``data-<name>`` of every element ``selector`` matches, as numbers."""
    found: list[float] = await page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})]"
        f".map(e => Number(e.dataset[{json.dumps(name)}]))"
    )
    return found


async def refusal_code(page: Page) -> str:
    """The error code of the refusal the page shows."""
    code: str = await page.evaluate("document.querySelector('.refusal').dataset.code")
    return code


async def picture(page: Page, path: Path) -> None:
    png = await page.screenshot(path)
    assert png_colours(png) > 8, "the screenshot is (nearly) one colour"


def clean(problems: list[Problem]) -> None:
    assert problems == [], problems


async def test_fleet_health_shows_every_device_and_the_hubs_counters(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    devices = dash.api(f"/v1/brands/{dash.brand}/devices")["devices"]
    async with chromium.page() as page:
        assert await show(page, dash, "fleet") == "ready"
        assert await count(page, "#devices tbody tr") == len(devices) == 9
        shown = await texts(page, "#devices tbody tr td:first-child")
        assert sorted(shown) == sorted(d["device"] for d in devices)
        # devices per product and models running, as bars
        assert await count(page, "svg rect.bar") >= 2
        running = {m for d in devices for m in d["models"]}
        assert running, "the fleet's agents run the shipped models"
        labels = await texts(page, "svg text")
        assert running <= set(labels)
        # the replayed delta: the hub counted a rejection, and the page shows it by reason
        assert await count(page, "#rejections tbody tr") >= 1
        await picture(page, tmp_path / "fleet.png")
        clean(page.problems)


async def test_twin_explorer_lists_twins_and_plots_a_twins_history(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    twins = dash.api(f"/v1/brands/{dash.brand}/twins?limit=50")["twins"]
    async with chromium.page() as page:
        assert await show(page, dash, "twins") == "ready"
        assert await texts(page, "#twins tbody tr a") == twins
        assert len(twins) >= 5
        await picture(page, tmp_path / "twins.png")
        # the twin with the most fields, opened from the list by its link
        states = [dash.api(f"/v1/brands/{dash.brand}/twins/{t}") for t in twins]
        richest = max(states, key=lambda s: len(s["fields"]))
        await page.evaluate("document.getElementById('page').dataset.state = 'stale'")
        await page.evaluate(
            f"document.querySelector('#twins a[href=\"#twin/{richest['twin']}\"]').click()"
        )
        await page.wait_for("document.getElementById('page').dataset.state === 'ready'")
        assert await count(page, "#fields tbody tr") == len(richest["fields"])
        points = [int(n) for n in await numbers(page, "svg path.series", "points")]
        numeric = [f for f, v in richest["fields"].items() if isinstance(v["value"], int | float)
                   and not isinstance(v["value"], bool)]  # fmt: skip
        assert 1 <= len(points) <= len(numeric)
        assert max(points) >= 2, "a history line has several points"
        paths = await page.evaluate(
            "[...document.querySelectorAll('svg path.series')].map(p => p.getAttribute('d'))"
        )
        for d, n in zip(paths, points, strict=True):
            assert d.startswith("M")
            assert d.count("L") == n - 1
        await picture(page, tmp_path / "twin.png")
        clean(page.problems)


async def test_segments_show_sizes_per_product_and_moves(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    sizes: dict[str, dict[int, int]] = {}
    for product in ("coffee", "thermostat", "tv", "wearable"):
        changes = dash.api(f"/v1/brands/{dash.brand}/segments/changes?product={product}&start=0")[
            "changes"
        ]
        latest = {c["twin"]: c["to"] for c in changes}
        for seg in latest.values():
            sizes.setdefault(product, {}).setdefault(seg, 0)
            sizes[product][seg] += 1
    assert sizes, "the fleet's models put twins in segments"
    async with chromium.page() as page:
        assert await show(page, dash, "segments") == "ready"
        bars = await numbers(page, "#segments rect.bar", "value")
        assert sorted(bars) == sorted(n for by in sizes.values() for n in by.values())
        # every twin got its first segment in the last 7 days: each is a move from "new"
        flows = await numbers(page, "#segments path.flow", "count")
        assert sum(flows) == sum(bars)
        await picture(page, tmp_path / "segments.png")
        clean(page.problems)


async def test_churn_risk_list_ranks_the_riskiest_twins_as_the_index_does(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    """The list is the twin query index's answer to "scored twins, riskiest first": the
    same twins in the same order, with their risks falling."""
    body = dash.api(
        f"/v1/brands/{dash.brand}/twins?where=churn_risk%20%3E%3D%200&sort=-churn_risk&limit=50"
    )
    assert body["items"], "the fleet's models scored some twins"
    async with chromium.page() as page:
        assert await show(page, dash, "churn") == "ready"
        assert await count(page, "#needs-index") == 0
        shown = await texts(page, "#churn tbody tr td:first-child")
        assert shown == [item["twin"] for item in body["items"]]
        risks = [float(r) for r in await texts(page, "#churn tbody tr td:nth-child(2)")]
        assert risks == sorted(risks, reverse=True)
        want = [item["churn_risk"] for item in body["items"]]
        assert all(abs(r - w) <= 0.0005 + 1e-9 for r, w in zip(risks, want, strict=True))
        await picture(page, tmp_path / "churn.png")
        clean(page.problems)


async def test_privacy_requests_are_listed_with_their_receipts(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    requests = dash.api(f"/v1/brands/{dash.brand}/privacy/requests")["requests"]
    async with chromium.page() as page:
        assert await show(page, dash, "privacy") == "ready"
        ids = await texts(page, "#requests tbody tr td:first-child")
        assert ids == [r["request_id"] for r in requests]
        assert len(ids) >= 1
        assert "mallory" not in await text(page, "main")  # the subject is never in the ledger
        await picture(page, tmp_path / "privacy.png")
        clean(page.problems)


async def test_triggers_lists_the_rules_and_their_recent_events(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    rules = dash.api(f"/v1/brands/{dash.brand}/triggers")["rules"]
    events = dash.api(f"/v1/brands/{dash.brand}/triggers/events?limit=50")["events"]
    assert len(rules) == 2
    assert events, "the fleet's segment changes made trigger events"
    async with chromium.page() as page:
        assert await show(page, dash, "triggers") == "ready"
        assert await texts(page, "#rules tbody tr td:first-child") == [r["rule_id"] for r in rules]
        conditions = await texts(page, "#rules tbody tr td:nth-child(3)")
        assert "coffee: churn risk crosses 0.5 upward" in conditions
        shown = await texts(page, "#trigger-events tbody tr td:first-child")
        assert shown == [str(e["seq"]) for e in events]  # newest first, as the API lists them
        twins = await texts(page, "#trigger-events tbody tr td:nth-child(4) a")
        assert twins == [e["twin"] for e in events]
        await picture(page, tmp_path / "triggers.png")
        clean(page.problems)


async def test_a_key_without_the_triggers_scope_is_refused_the_triggers_page(
    chromium: Chromium, dash: Dash
) -> None:
    async with chromium.page() as page:
        assert await show(page, dash, "triggers", token=dash.read_token) == "error"
        assert await refusal_code(page) == "missing_scope"


async def test_experiments_show_their_arms_and_uplift_with_its_interval(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    """The strategy lab's experiments as the API lists them: arms, churned counts, the
    uplift and effect with their intervals; the offer's name (markup) shown as text."""
    listed = dash.api(f"/v1/brands/{dash.brand}/lab/experiments")["experiments"]
    assert [e["status"] for e in listed] == ["finished"]
    done = listed[0]
    async with chromium.page() as page:
        assert await show(page, dash, "experiments") == "ready"
        cells = await texts(page, "#experiments tbody tr td")
        assert cells[:5] == [
            done["id"],
            "<i>loyalty</i>",
            "finished",
            str(done["assigned"]["treated"]),
            str(done["assigned"]["holdout"]),
        ]
        treated = done["result"]["treated"]
        assert cells[6].startswith(f"{treated['churned']} / {treated['twins']}")
        uplift = done["result"]["uplift"]
        assert cells[8] == (
            f"{100 * uplift['value']:.1f} % [{100 * uplift['low']:.1f} %, "
            f"{100 * uplift['high']:.1f} %]"
        )
        assert await count(page, "main i") == 0
        await picture(page, tmp_path / "experiments.png")
        clean(page.problems)


def _refused(problems: list[Problem]) -> list[tuple[str, int]]:
    """The requests answered with an error status; every other problem must be the
    browser's own console line about that answer."""
    answers = [p for p in problems if p.kind == "http_error"]
    others = [p for p in problems if p.kind != "http_error"]
    assert all(
        p.kind == "console" and "the server responded with a status of" in p.text for p in others
    ), others
    return [(p.url.split("?")[0].split("/v1/", 1)[-1], p.status) for p in answers]


@pytest.mark.parametrize(
    ("who", "code", "status"),
    [("wrong_key", "bad_key", 401), ("other_brands_key", "wrong_brand", 403)],
)
async def test_a_key_the_api_refuses_shows_the_apis_refusal(
    chromium: Chromium, dash: Dash, who: str, code: str, status: int
) -> None:
    token = "tsk_000000000000_" + "x" * 43 if who == "wrong_key" else dash.other_token
    async with chromium.page() as page:
        assert await show(page, dash, "twins", token=token) == "error"
        assert await refusal_code(page) == code
        refusal = await text(page, ".refusal")
        assert f"{status} {code}" in refusal
        assert await count(page, "#twins") == 0  # nothing of the brand is shown
        assert _refused(page.problems) == [(f"brands/{dash.brand}/twins", status)]


async def test_another_brands_twin_is_not_shown(chromium: Chromium, dash: Dash) -> None:
    """Its id under this brand is a twin this brand does not have: 404, none of its
    values on the page; under the other brand's name this key is refused."""
    async with chromium.page() as page:
        assert await show(page, dash, f"twin/{dash.other_twin}") == "error"
        assert await refusal_code(page) == "twin_not_found"
        assert await count(page, "#fields") == 0
        assert "coffee.strength" not in await text(page, "main")
    async with chromium.page() as page:
        assert await show(page, dash, f"twin/{dash.other_twin}", brand=dash.other_brand) == "error"
        assert await refusal_code(page) == "wrong_brand"
        assert await count(page, "#fields") == 0


async def test_a_key_without_the_privacy_scope_is_refused_the_privacy_page(
    chromium: Chromium, dash: Dash
) -> None:
    async with chromium.page() as page:
        assert await show(page, dash, "privacy", token=dash.read_token) == "error"
        assert await refusal_code(page) == "missing_scope"
        assert await count(page, "#requests") == 0


async def test_a_twin_field_holding_markup_is_shown_as_text(chromium: Chromium, dash: Dash) -> None:
    """The customer's device sent ``<img src=x onerror=...>`` as a field value: the page
    shows those characters, makes no element of them and runs nothing."""
    async with chromium.page() as page:
        assert await show(page, dash, f"twin/{dash.xss_twin}") == "ready"
        names = await texts(page, "#fields tbody tr td:first-child")
        values = await texts(page, "#fields tbody tr td:nth-child(2)")
        assert dict(zip(names, values, strict=True))["coffee.segment_model"] == XSS
        assert await count(page, "img") == 0
        assert await page.evaluate("typeof window.__xss") == "undefined"
        clean(page.problems)


async def test_a_twins_page_shows_the_tags_that_hold_with_their_catalog(
    chromium: Chromium, dash: Dash
) -> None:
    """Mallory's device sent ``evening_routine`` true and ``strong_coffee`` false (a tag
    lost): the page lists the one that holds, with its product and catalog."""
    async with chromium.page() as page:
        assert await show(page, dash, f"twin/{dash.xss_twin}") == "ready"
        assert await texts(page, "#tags li") == ["evening_routine (coffee, tags@1)"]
        assert await count(page, "#tags strong") == 1
        clean(page.problems)
