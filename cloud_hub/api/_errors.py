"""serve: the API's one error path, and its one shape ``{"error": {"code", "message"}}``.

Handlers, the guard and the parameter parsers *raise* (a :class:`~cloud_hub.CloudHubError`
carries its answer: cloud_hub._errors draws the tree with the status of each); the
outermost middleware, :func:`refusals`, turns what they raise into the answer, counts it
(``twinsync_hub_api_refused_total{status}``) and logs why, with the route template (never
the path, which may hold a twin id). aiohttp's own refusals (no such route, method not
allowed, body too large) get the same shape; an exception that is no refusal is a bug:
logged with its traceback and answered 500 ``internal_error`` without its text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from cloud_hub._errors import CloudHubError, StoreError

from ._context import METRICS

__all__ = ["error_body", "error_response", "refusals", "route_of", "status_of"]

log = logging.getLogger("cloud_hub.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: how an InfluxDB failure is logged, by the status it is answered with (its own text is
#: logged, never answered)
_STORE_LOG = {
    503: (logging.WARNING, "InfluxDB unavailable"),
    400: (logging.WARNING, "InfluxDB refused a read this large"),
    500: (logging.ERROR, "InfluxDB refused the query"),
}
_INTERNAL = ("internal_error", "the hub failed to answer; it logged why")


def error_body(code: str, message: str) -> str:
    """The JSON text of an error."""
    return json.dumps({"error": {"code": code, "message": message}})


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error answer with the given status."""
    return web.Response(
        status=status,
        text=error_body(code, message),
        content_type="application/json",
        headers=headers,
    )


def status_of(exc: BaseException) -> int:
    """The HTTP status a request that ``exc`` ended is answered with (for the audit log)."""
    if isinstance(exc, web.HTTPException):
        return exc.status
    answer = exc.answer() if isinstance(exc, CloudHubError) else None
    return 500 if answer is None else answer.status


def route_of(request: web.Request) -> str:
    """``METHOD /route/{template}`` of ``request`` (the template: a path can hold a twin)."""
    resource = request.match_info.route.resource
    where = resource.canonical if resource is not None else "(no route)"
    return f"{request.method} {where}"


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON bodies for every error, and every refused request counted and logged."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (404 no route, 405, 413 over client_max_size)
        code = exc.reason.lower().replace(" ", "_")
        _refused(request, exc.status, code)
        return error_response(exc.status, code, exc.reason)
    except CloudHubError as exc:
        return _answer(request, exc)
    except ConnectionResetError:
        raise  # the client went away: nobody to answer
    except Exception:
        # A bug: logged with its traceback; the client gets the one error shape, not
        # aiohttp's text page with the exception's text.
        log.exception("api %s failed", route_of(request))
        _refused(request, 500, _INTERNAL[0])
        return error_response(500, *_INTERNAL)
    if response.status >= 400:
        # an answer made elsewhere (a probe past the connection cap, a file not found)
        _refused(request, response.status, response.reason)
    return response


def _answer(request: web.Request, exc: CloudHubError) -> web.Response:
    answer = exc.answer()
    if answer is None:
        log.error("api %s failed: %s", route_of(request), exc, exc_info=exc)
        _refused(request, 500, _INTERNAL[0])
        return error_response(500, *_INTERNAL)
    if isinstance(exc, StoreError):
        level, what = _STORE_LOG.get(answer.status, _STORE_LOG[500])
        log.log(level, "api %s: %s: %s", route_of(request), what, exc)
    elif answer.status >= 500:
        # The hub's own trouble (the state store down, a privacy request to repeat): its
        # text, which may name a database host, is for the operator's log only.
        log.warning("api %s: %s", route_of(request), exc)
    _refused(request, answer.status, answer.code)
    return error_response(answer.status, answer.code, answer.message, headers=answer.headers)


def _refused(request: web.Request, status: int, why: str) -> None:
    request.app[METRICS].inc("twinsync_hub_api_refused_total", status=str(status))
    log.info("api %s refused: %d %s", route_of(request), status, why)
