"""A real headless Chromium driven over the Chrome DevTools Protocol (aiohttp's websocket
client): nothing is downloaded, Debian's ``chromium`` is the browser.

:class:`Chromium` is the browser process (one per test session); :meth:`Chromium.page`
opens a tab in a fresh browser context (its own sessionStorage and cache) that records
what a test must see: console errors, uncaught exceptions, requests that failed or were
answered with an error status, and CSP violations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--remote-debugging-port=0",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1280,900",
)


class Chromium:
    """The browser process; its DevTools endpoint is read from DevToolsActivePort."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        profile = folder / "profile"
        profile.mkdir(parents=True)
        self.log = folder / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws_url = f"ws://127.0.0.1:{port}{path}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A tab in a browser context of its own, closed afterwards."""
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(self.ws_url, max_msg_size=64 * 1024 * 1024)
            page = Page(ws)
            reader = asyncio.create_task(page.read())
            try:
                context = (await page.send("Target.createBrowserContext"))["browserContextId"]
                target = await page.send(
                    "Target.createTarget", url="about:blank", browserContextId=context
                )
                attached = await page.send(
                    "Target.attachToTarget", targetId=target["targetId"], flatten=True
                )
                page.session = attached["sessionId"]
                for domain in ("Page", "Runtime", "Network", "Log"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                page.session = None
                with contextlib.suppress(Exception):
                    await page.send("Target.disposeBrowserContext", browserContextId=context)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await ws.close()


@dataclass
class Problem:
    """Something a page did that a clean page does not."""

    kind: str  # console, exception, request_failed, http_error
    text: str
    url: str = ""
    status: int = 0


@dataclass
class Page:
    """One tab: send CDP commands, evaluate JavaScript, record problems."""

    ws: aiohttp.ClientWebSocketResponse
    session: str | None = None
    problems: list[Problem] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)
    _urls: dict[str, str] = field(default_factory=dict)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """A command; its result (a CDP error raises)."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        await self.ws.send_str(json.dumps(message))
        async with asyncio.timeout(60):
            answer = await future
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._event(data.get("method", ""), data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.problems.append(Problem("console", text))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.problems.append(Problem("exception", text))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.problems.append(Problem("console", entry["text"], entry.get("url", "")))
        elif method == "Network.requestWillBeSent":
            self._urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed":
            url = self._urls.get(params["requestId"], "")
            self.problems.append(Problem("request_failed", params["errorText"], url))
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            response = params["response"]
            self.problems.append(
                Problem("http_error", response["statusText"], response["url"], response["status"])
            )

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        async with asyncio.timeout(60):
            await self._loaded.wait()

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (awaited if it is a promise)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 60) -> Any:
        """Poll until ``expression`` is truthy; its value (fails after ``within`` s)."""
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never true: {expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> bytes:
        """A PNG of the window at half scale (small enough to decode in the test), saved
        at ``path``."""
        clip = {"x": 0, "y": 0, "width": 1280, "height": 900, "scale": 0.5}
        shot = await self.send("Page.captureScreenshot", format="png", clip=clip)
        png = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.write_bytes, png)
        return png


def png_colours(png: bytes) -> int:
    """How many distinct colours a PNG (8-bit RGB or RGBA, as Chromium writes) holds:
    decoded here with zlib, so a blank or broken screenshot fails a test."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, chunk = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8, depth
    assert colour in (2, 6), colour
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        if row % 8 == 0:  # a sample of rows is enough to tell a page from a blank
            colours.update(bytes(line[i : i + bpp]) for i in range(0, stride, bpp))
        previous = line
    return len(colours)
