"""The dashboard's segment insights page in a real headless Chromium, on the hub of
tests/web holding a simulated fleet scored by the shipped models: the segment map (a line
per segment and model), the migration flow diagram, the profiles and the share alerts
render what the API answers, with no console error and no failed request; another
brand's key is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

from browser import Chromium, Page, png_colours
from dash_env import Dash

PRODUCTS = ("coffee", "thermostat", "tv", "wearable")


async def _open(page: Page, dash: Dash, token: str) -> str:
    await page.goto(f"{dash.url}/dashboard/#insights")
    creds = json.dumps([dash.brand, token])
    await page.evaluate(
        f"""(() => {{ const [b, k] = {creds};
        const f = document.getElementById('key-form'); f.brand.value = b; f.key.value = k;
        f.querySelector('button[type=submit]').click(); }})()"""
    )
    state: str = await page.wait_for(
        "['ready', 'error'].includes(document.getElementById('page').dataset.state) "
        "&& document.getElementById('page').dataset.state"
    )
    return state


async def _eval(page: Page, script: str) -> object:
    return await page.evaluate(script)


async def test_insights_show_the_segment_map_moves_profiles_and_alerts(
    chromium: Chromium, dash: Dash, tmp_path: Path
) -> None:
    base = f"/v1/brands/{dash.brand}/segments"
    lines, profiles, cells = 0, {}, 0
    for product in PRODUCTS:
        day_ago = time.time_ns() // 1_000_000 - 86_400_000
        sizes = dash.api(f"{base}/sizes?product={product}&step=1h&start={day_ago}")
        lines += len(sizes["series"])
        profile = dash.api(f"{base}/profile?product={product}&top=3")
        if profile["models"]:
            profiles[product] = sorted(s["twins"] for m in profile["models"] for s in m["segments"])
        cells += len(dash.api(f"{base}/migration?product={product}")["cells"])
    assert profiles, "the fleet's models put twins in segments"
    assert lines > 0
    assert cells > 0
    async with chromium.page() as page:
        assert await _open(page, dash, dash.read_token) == "ready"
        # the segment map: a line per (model, segment) with twins in the last 24 h
        drawn = await _eval(page, "document.querySelectorAll('#insights path.segment-line').length")
        assert isinstance(drawn, int)
        assert 0 < drawn <= lines
        # moves: the fleet's twins entered in the last 12 h, drawn from "new"
        flows = await _eval(
            page,
            "[...document.querySelectorAll('#insights path.flow')]"
            ".map(e => Number(e.dataset.count))",
        )
        assert isinstance(flows, list)
        assert sum(flows) > 0
        for product, sizes in profiles.items():
            shown = await _eval(
                page,
                f"[...document.querySelectorAll('#profile-{product} tbody tr')]"
                ".map(r => Number(r.cells[1].textContent))",
            )
            assert isinstance(shown, list)
            assert sorted(shown) == sizes, product
            verdicts = await _eval(
                page, f"document.querySelectorAll('#alerts-{product} tbody tr').length"
            )
            assert verdicts == len(sizes), product
        words = await _eval(page, "document.getElementById('insights').textContent")
        assert isinstance(words, str)
        assert "profiles of" in words
        assert "share alerts" in words
        png = await page.screenshot(tmp_path / "insights.png")
        assert png_colours(png) > 8
        assert page.problems == []


async def test_insights_with_another_brands_key_show_the_refusal_only(
    chromium: Chromium, dash: Dash
) -> None:
    async with chromium.page() as page:
        assert await _open(page, dash, dash.other_token) == "error"
        code = await _eval(page, "document.querySelector('.refusal').dataset.code")
        assert code == "wrong_brand"
        assert await _eval(page, "document.querySelectorAll('#insights').length") == 0
