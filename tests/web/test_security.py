"""The dashboard's own defences: its headers, an inline script blocked by the browser,
and the static routes serving their shipped files and nothing else."""

from __future__ import annotations

import json

import aiohttp
import pytest
from browser import Chromium
from dash_env import Dash

from cloud_hub.api import DASHBOARD_CSP

_PAGES = ("/dashboard/", "/dashboard/dashboard.css", "/dashboard/js/app.js", "/dashboard/js/dom.js")


@pytest.mark.parametrize("path", _PAGES)
async def test_every_file_has_the_strict_headers(dash: Dash, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(dash.url + path) as resp:
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        assert csp == DASHBOARD_CSP
        assert "script-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp
        assert "http" not in csp  # no third-party origin
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "Set-Cookie" not in resp.headers
        body = await resp.text()
    if path.endswith(".html"):
        assert "<script>" not in body  # no inline script to allow


async def test_an_inline_script_is_blocked(chromium: Chromium, dash: Dash) -> None:
    """A script element with inline code (what an injection would add) does not run; the
    browser reports the CSP violation."""
    async with chromium.page() as page:
        await page.goto(f"{dash.url}/dashboard/")
        await page.evaluate(
            """window.__violations = [];
            document.addEventListener('securitypolicyviolation',
                e => window.__violations.push(e.violatedDirective));
            const s = document.createElement('script');
            s.textContent = 'window.__inline = 1';
            document.body.append(s);"""
        )
        violations = await page.wait_for("window.__violations.length && window.__violations")
        assert violations[0].startswith("script-src")
        assert await page.evaluate("typeof window.__inline") == "undefined"
        # and the page's only scripts are its own modules
        sources = await page.evaluate(
            "[...document.scripts].filter(s => s.src).map(s => new URL(s.src).pathname)"
        )
        assert sources == ["/dashboard/js/app.js"]


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/js/..%2f_dashboard.py",
        "/dashboard/js/%2e%2e%2f%2e%2e%2f_app.py",
        "/dashboard/js/../../api/_app.py",
        "/dashboard/js/app.js%00.py",
        "/dashboard/js/" + "a" * 5000 + ".js",
        "/dashboard/index.html",
        "/dashboard/js/",
    ],
)
async def test_the_static_routes_serve_only_the_shipped_files(dash: Dash, path: str) -> None:
    """A traversal, a NUL, a hostile length or an unknown name: 404 with the API's error
    shape (or aiohttp's refusal of the request line), never a file of the package."""
    async with aiohttp.ClientSession() as session, session.get(dash.url + path) as resp:
        body = await resp.read()
    assert resp.status in (400, 404, 414), resp.status
    assert b"import" not in body
    if resp.status == 404 and resp.content_type == "application/json":
        assert set(json.loads(body)["error"]) == {"code", "message"}
