"""The API's one error shape: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import json

from aiohttp import web

__all__ = ["bad_request", "error_body", "error_response"]


def error_body(code: str, message: str) -> str:
    """The JSON text of an error (for an ``HTTPException``'s ``text``)."""
    return json.dumps({"error": {"code": code, "message": message}})


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """An error answer with the given status."""
    return web.Response(
        status=status,
        text=error_body(code, message),
        content_type="application/json",
        headers=headers,
    )


def bad_request(code: str, message: str) -> web.HTTPBadRequest:
    """A 400 to raise from a handler; the API's error middleware counts and logs it."""
    return web.HTTPBadRequest(text=error_body(code, message), content_type="application/json")
