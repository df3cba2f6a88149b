"""InfluxDB over its v1 HTTP API: ``/write`` (line protocol) and ``/query`` (InfluxQL).

The same endpoints are served by InfluxDB 1.x, by 2.x (v1 compatibility API, with a
DBRP mapping and ``token`` auth) and by 3.x, so this one client covers them; 1.6 is what
the test-suite runs against. aiohttp errors are translated to StoreError here and only
here.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import aiohttp

from cloud_hub._config import InfluxSettings
from cloud_hub._errors import StoreError

__all__ = ["InfluxStore", "quote_ident", "quote_str"]

_IDENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def quote_ident(name: str) -> str:
    """A double-quoted InfluxQL identifier (names are validated by protocol first)."""
    if not _IDENT.match(name):
        raise StoreError(f"refusing to quote identifier {name!r}", retryable=False)
    return f'"{name}"'


def quote_str(value: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxStore:
    """Async client for one database; use as ``async with InfluxStore(settings) as store``."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._params: dict[str, str] = {"db": settings.database}
        if settings.retention_policy:
            self._params["rp"] = settings.retention_policy

    async def __aenter__(self) -> InfluxStore:
        # Credentials go in a header on every request. Not as u=/p= parameters: InfluxDB
        # 1.x reads those only from the URL (a POST /query carrying them in its form body
        # is anonymous, so DELETE and CREATE were refused with 401), and URLs get logged.
        headers = {}
        if self.settings.token:
            headers["Authorization"] = f"Token {self.settings.token}"
        elif self.settings.username:
            headers["Authorization"] = aiohttp.encode_basic_auth(
                self.settings.username, self.settings.password
            )
        self._session = aiohttp.ClientSession(
            base_url=self.settings.url.rstrip("/") + "/",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise StoreError("InfluxStore used outside 'async with'", retryable=False)
        return self._session

    async def ping(self) -> bool:
        """True when InfluxDB answers /ping."""
        try:
            async with self._http.get("ping", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 204
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def ensure_database(self) -> None:
        """CREATE DATABASE (idempotent); skipped where the server manages buckets."""
        await self.query(f"CREATE DATABASE {quote_ident(self.settings.database)}", write=True)

    async def write(self, lines: list[str]) -> None:
        """Write lines (ns precision). Returns only once InfluxDB has them durably (204)."""
        if not lines:
            return
        body = "\n".join(lines).encode()
        try:
            # A file-like body is streamed in chunks instead of blocking the loop on one send.
            async with self._http.post(
                "write", params={**self._params, "precision": "ns"}, data=io.BytesIO(body)
            ) as resp:
                if resp.status == 204:
                    return
                text = (await resp.text())[:500]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StoreError(f"InfluxDB write failed: {exc.__class__.__name__}: {exc}") from exc
        # 4xx means the data itself is refused: retrying the same batch cannot help.
        raise StoreError(
            f"InfluxDB refused write ({resp.status}): {text}", retryable=resp.status >= 500
        )

    async def query(self, q: str, *, write: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; return the ``results`` list. Times are epoch nanoseconds."""
        params = {**self._params, "q": q, "epoch": "ns"}
        try:
            request = (
                self._http.post("query", data=params)
                if write
                else self._http.get("query", params=params)
            )
            async with request as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StoreError(f"InfluxDB query failed: {exc.__class__.__name__}: {exc}") from exc
        if status != 200:
            raise StoreError(
                f"InfluxDB query error ({status}): {text[:500]}", retryable=status >= 500
            )
        try:
            results: list[dict[str, Any]] = json.loads(text).get("results", [])
        except json.JSONDecodeError as exc:
            raise StoreError(f"InfluxDB answered non-JSON: {text[:200]}") from exc
        for result in results:
            if "error" in result:
                raise StoreError(f"InfluxQL error: {result['error']}", retryable=False)
        return results

    async def wait_ready(self, within_s: float) -> bool:
        """Poll /ping until it answers or ``within_s`` seconds pass."""
        deadline = asyncio.get_running_loop().time() + within_s
        while not await self.ping():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True
