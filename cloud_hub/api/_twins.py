"""``GET /v1/brands/{brand}/twins``: find a brand's twins in the twin query index.

``where`` filters (cloud_hub.api._twin_query), ``sort`` orders (a twin field,
``last_seen``, ``first_seen``, ``churn_risk`` or ``twin``; ``-`` before it for
descending), ``limit`` sizes a page, ``after`` resumes after the last page (the ``next``
URL carries it), ``fields`` adds field values to each twin. Without ``sort`` the order
is by twin id and ``after`` is the last twin id, as the route always took it; with a
``sort`` it is an opaque cursor (``c1.`` and base64url JSON) that only resumes the same
sort. The answer keeps ``twins`` (the ids) and adds ``items`` (each twin's row), and
``count``: the matching twins, exact up to :data:`COUNT_CAP` (``count_exact`` false:
more than that). The brand is the path's, checked against the key by the guard; the
``where`` text never reaches SQL (the store writes the SQL, its values as parameters).

An instance that does not keep the index (``index.enabled = false``) lists twin ids
from InfluxDB as before and answers 503 ``index_disabled`` to ``where``, ``sort`` and
``fields``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import urllib.parse
from typing import Any

from aiohttp import web

from cloud_hub._errors import RequestError
from cloud_hub.store import Filter, IndexReader, Position, SortKey
from protocol import FIELDS, TwinSyncError, check_twin

from ._context import CLOCK, INDEX, READER
from ._params import path_brand, query_int, query_text
from ._twin_query import MAX_WHERE, parse_where

__all__ = ["COUNT_CAP", "MAX_FIELDS", "list_twins"]

#: ``count`` is exact up to this many matches
COUNT_CAP = 10_000
#: the most field names in ``fields``
MAX_FIELDS = 32
_SORTS = ("twin", "last_seen", "first_seen", "churn_risk")
_CURSOR = "c1."


def _sort(request: web.Request) -> SortKey:
    raw = query_text(request, "sort", 100)
    if raw is None:
        return SortKey()
    key = raw.removeprefix("-")
    if key not in _SORTS and key not in FIELDS:
        raise RequestError(
            f"sort must be twin, last_seen, first_seen, churn_risk or a twin field, with '-' "
            f"before it for descending (sort=-churn_risk); {key!r} is none of them",
            reason="bad_sort",
        )
    return SortKey(key, raw.startswith("-"))


def _fields(request: web.Request) -> list[str]:
    raw = query_text(request, "fields", 4000)
    if raw is None:
        return []
    names = [n for n in raw.split(",") if n]
    unknown = [n for n in names if n not in FIELDS]
    if unknown or len(names) > MAX_FIELDS or len(set(names)) != len(names):
        raise RequestError(
            f"fields must be at most {MAX_FIELDS} distinct twin fields, comma-separated"
            + (f"; unknown: {', '.join(unknown[:5])}" if unknown else ""),
            reason="bad_fields",
        )
    return names


def encode_cursor(sort: SortKey, at: Position) -> str:
    """The ``after`` of the page following ``at`` in ``sort`` order."""
    if sort == SortKey():
        return at.twin  # the twin id, as the route always paged
    body = json.dumps([str(sort), at.phase, at.value, at.twin], separators=(",", ":"))
    return _CURSOR + base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(raw: str, sort: SortKey) -> Position:
    """``after`` as a position in ``sort`` order (400 ``bad_after`` if it is none)."""
    if sort == SortKey():
        try:
            return Position(1, None, check_twin(raw))
        except TwinSyncError:
            raise RequestError(
                "after must be a twin id (the last of a page)", reason="bad_after"
            ) from None
    try:
        if not raw.startswith(_CURSOR):
            raise ValueError("not a cursor")
        text = base64.urlsafe_b64decode(raw[len(_CURSOR) :] + "=" * (-len(raw) % 4))
        key, phase, value, twin = json.loads(text)
        if key != str(sort) or not _fits(sort, phase, value):
            raise ValueError("a cursor of another query")
        return Position(phase, value, check_twin(twin))
    except (ValueError, TypeError, TwinSyncError, binascii.Error, UnicodeDecodeError):
        raise RequestError(
            f"after must be the cursor of a page of this query (sort={sort}): take it from "
            "the 'next' URL of the page before",
            reason="bad_after",
        ) from None


def _fits(sort: SortKey, phase: object, value: object) -> bool:
    """Whether a decoded (phase, value) is a position ``sort`` can have."""
    if phase == 2:
        return sort.nullable and value is None
    if phase != 1 or isinstance(value, bool):
        return False
    if sort.key == "twin" or sort.text:
        return isinstance(value, str)
    return isinstance(value, int | float)


async def list_twins(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/twins?where=&sort=&limit=&after=&fields=`` (module docstring)."""
    brand = path_brand(request)
    limit = query_int(request, "limit", 100, 1, 10_000)
    where_text = query_text(request, "where", MAX_WHERE)
    sort, fields = _sort(request), _fields(request)
    raw_after = query_text(request, "after", 1000)
    index: IndexReader | None = request.app[INDEX]
    if index is None:
        return await _from_influx(request, brand, limit, raw_after, where_text, sort, fields)
    where: Filter | None = None
    if where_text is not None:
        where = parse_where(where_text, request.app[CLOCK].now_ms())
    after = None if raw_after is None else decode_cursor(raw_after, sort)
    page = await asyncio.to_thread(index.query, brand, where, sort, limit, after, fields, COUNT_CAP)
    count = page.count
    body: dict[str, Any] = {
        "brand": brand,
        "twins": [item["twin"] for item in page.items],
        "items": page.items,
        "count": min(count, COUNT_CAP),
        "count_exact": count <= COUNT_CAP,
    }
    if page.next is not None:
        query = {"where": where_text or "", "fields": ",".join(fields)}
        query["sort"] = "" if sort == SortKey() else str(sort)
        query = {k: v for k, v in query.items() if v}
        query.update(limit=str(limit), after=encode_cursor(sort, page.next))
        body["next"] = f"/v1/brands/{brand}/twins?{urllib.parse.urlencode(query)}"
    return web.json_response(body)


async def _from_influx(
    request: web.Request,
    brand: str,
    limit: int,
    after: str | None,
    where: str | None,
    sort: SortKey,
    fields: list[str],
) -> web.Response:
    """Twin ids from InfluxDB, for an instance that does not keep the index."""
    if where is not None or sort != SortKey() or fields:
        raise RequestError(
            "this hub instance does not keep the twin query index (index.enabled = false): "
            "where, sort and fields are not served; ask an instance that keeps it",
            reason="index_disabled",
            status=503,
        )
    if after is not None:
        decode_cursor(after, sort)
    twins = await request.app[READER].list_twins(brand, limit, after)
    body: dict[str, Any] = {"brand": brand, "twins": twins}
    if len(twins) == limit:
        body["next"] = f"/v1/brands/{brand}/twins?limit={limit}&after={twins[-1]}"
    return web.json_response(body)
