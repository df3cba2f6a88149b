"""OpenAPI: the brand dashboard's static files (no key; the pages call the API with the
key the user pastes: docs/dashboard.md)."""

from __future__ import annotations

from typing import Final

from ._schema import Operation, Param, Schema, string

__all__ = ["OPERATIONS", "SCHEMAS"]

SCHEMAS: Final[dict[str, Schema]] = {}

_SECURITY_NOTE: Final = (
    "Served with a strict Content-Security-Policy (this origin only, no inline script, "
    "frame-ancestors 'none') and X-Content-Type-Options: nosniff."
)

OPERATIONS: Final = (
    Operation(
        method="GET",
        path="/dashboard/",
        operation_id="get_dashboard",
        summary="The brand dashboard: fleet health, twins, segments, churn risk, privacy",
        tag="dashboard",
        scope="public",
        description=_SECURITY_NOTE,
        answer=None,
        answer_type="text/html",
        answer_text="the page",
    ),
    Operation(
        method="GET",
        path="/dashboard/dashboard.css",
        operation_id="get_dashboard_css",
        summary="The dashboard's style sheet",
        tag="dashboard",
        scope="public",
        answer=None,
        answer_type="text/css",
        answer_text="the style sheet",
    ),
    Operation(
        method="GET",
        path="/dashboard/js/{module}",
        operation_id="get_dashboard_module",
        summary="One of the dashboard's JavaScript modules",
        tag="dashboard",
        scope="public",
        description=_SECURITY_NOTE,
        params=(
            Param(
                name="module",
                where="path",
                schema=string(pattern=r"^[a-z_]+\.js$"),
                description="the module's file name",
                example="app.js",
            ),
        ),
        answer=None,
        answer_type="text/javascript",
        answer_text="the module",
        errors={404: ("no_such_file",)},
    ),
)
