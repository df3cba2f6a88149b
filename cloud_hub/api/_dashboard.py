"""serve: the brand dashboard, static pages under ``/dashboard/`` (docs/dashboard.md).

    GET /dashboard/                 the page (index.html)
    GET /dashboard/dashboard.css    its style sheet
    GET /dashboard/js/{module}      its JavaScript modules

The pages hold no data: the browser calls the documented ``/v1`` API with the brand key
the user pasted (kept in sessionStorage, sent as ``Authorization: Bearer``), so the
dashboard has exactly the keys and scopes of the API and no cookie, hence no CSRF
surface. What the routes serve is read once when the app is built (a few kilobytes) and
only the files shipped in ``dashboard/`` exist: a name is looked up in that table, never
joined to a path. Every answer carries a strict Content-Security-Policy (scripts, styles
and requests from this origin only, no inline script, no framing), ``nosniff`` and no
referrer, so a customer's twin field holding markup can neither run nor load anything
even if a page ever inserted it as HTML (the pages only use ``textContent``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from cloud_hub._errors import RequestError

from ._guard import route

__all__ = ["CONTENT_SECURITY_POLICY", "add_dashboard_routes"]

#: only this origin's scripts, styles and API; no inline script or style, no plug-ins,
#: no framing by anyone, no form posts, no <base> rewriting
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # A new release's files must replace the old ones at once: revalidate every time.
    "Cache-Control": "no-cache",
}
_DIR: Final = Path(__file__).with_name("dashboard")
_FILES = web.AppKey("dashboard_files", dict[str, bytes])


def _load() -> dict[str, bytes]:
    """Every shipped file by its URL name (``index.html``, ``dashboard.css``,
    ``js/app.js``, ...)."""
    files = {
        "index.html": (_DIR / "index.html").read_bytes(),
        "dashboard.css": (_DIR / "dashboard.css").read_bytes(),
    }
    for path in sorted((_DIR / "js").glob("*.js")):
        files[f"js/{path.name}"] = path.read_bytes()
    return files


def _answer(request: web.Request, name: str, content_type: str) -> web.Response:
    body = request.app[_FILES].get(name)
    if body is None:
        raise RequestError(
            f"the dashboard has no file {name[:80]!r}: open /dashboard/",
            reason="no_such_file",
            status=404,
        )
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)


async def dashboard_page(request: web.Request) -> web.Response:
    """``GET /dashboard/``: the page; it asks for a brand and its API key."""
    return _answer(request, "index.html", "text/html")


async def dashboard_css(request: web.Request) -> web.Response:
    """``GET /dashboard/dashboard.css``."""
    return _answer(request, "dashboard.css", "text/css")


async def dashboard_module(request: web.Request) -> web.Response:
    """``GET /dashboard/js/{module}``: one of the page's JavaScript modules."""
    return _answer(request, f"js/{request.match_info['module']}", "text/javascript")


def add_dashboard_routes(app: web.Application) -> None:
    """Serve the dashboard (no key: the files hold no tenant's data)."""
    app[_FILES] = _load()
    route(app, "GET", "/dashboard/", dashboard_page, "public")
    route(app, "GET", "/dashboard/dashboard.css", dashboard_css, "public")
    route(app, "GET", "/dashboard/js/{module}", dashboard_module, "public")
