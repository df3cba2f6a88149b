"""Feed one device's signals to a running agent over its NDJSON ingest port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence

from protocol import OPTIONAL_PURPOSES, SignalIn

from ._errors import SimulationError

__all__ = ["ExternalFeeder"]

log = logging.getLogger("firmware_sim.feeder")

_NETWORK_ERRORS = (ConnectionError, OSError, asyncio.IncompleteReadError)
#: every optional purpose granted: the simulated customers accept the whole notice
ALL_GRANTED = dict.fromkeys(OPTIONAL_PURPOSES, True)


class ExternalFeeder:
    """Feeds signals to an agent's TCP ingest port, surviving agent crashes.

    Requests are pipelined up to ``window`` unanswered lines; replies come in order. When
    the connection breaks, every signal without a reply is sent again on a new
    connection (the agent answers ``duplicate`` for one it had already committed).
    """

    def __init__(
        self, port: int, host: str = "127.0.0.1", window: int = 256, pace_s: float = 0.0
    ) -> None:
        if window < 1:
            raise SimulationError("window must be at least 1")
        if pace_s < 0:
            raise SimulationError("pace_s must be >= 0")
        self.host, self.port = host, port
        self.window = window
        #: real seconds between two signals (0: as fast as the window allows), live-like
        self.pace_s = pace_s
        #: firmware seq -> (status, reason) of the first reply received for it
        self.results: dict[int, tuple[str, str | None]] = {}
        #: every reply in arrival order: (seq, status, reason)
        self.replies: list[tuple[int | None, str, str | None]] = []
        #: connections re-established after a failure
        self.reconnects = 0
        #: signals sent again because their reply never came
        self.resent = 0
        self._sent = 0

    async def grant(
        self, subjects: Sequence[str], notice: str = "sim-1", *, give_up_s: float = 60
    ) -> None:
        """Record, through the ingest port, that each subject agreed to every optional
        purpose (what a device's app does when its user accepts the notice)."""
        deadline = time.monotonic() + give_up_s
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                break
            except _NETWORK_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise SimulationError(f"agent on port {self.port} unreachable: {exc}") from exc
                await asyncio.sleep(0.2)
        try:
            for subject in subjects:
                line = {"consent": {"subject": subject, "purposes": ALL_GRANTED, "notice": notice}}
                writer.write(json.dumps(line).encode() + b"\n")
                await writer.drain()
                reply = json.loads(await reader.readline())
                if reply.get("status") != "accepted":
                    raise SimulationError(f"consent refused by the agent: {reply}")
        finally:
            writer.close()
            with contextlib.suppress(*_NETWORK_ERRORS):
                await writer.wait_closed()

    async def feed(self, signals: Sequence[SignalIn], *, give_up_s: float = 60) -> None:
        """Send all ``signals`` in order until each has a reply.

        Raises :class:`SimulationError` when the agent stays unreachable for ``give_up_s``.
        """
        pending = list(signals)
        deadline = time.monotonic() + give_up_s
        while pending:
            try:
                done = await self._session(pending)
            except _NETWORK_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise SimulationError(f"agent on port {self.port} unreachable: {exc}") from exc
                await asyncio.sleep(0.2)
                self.reconnects += 1
                continue
            if done < len(pending):  # the connection broke: resend what has no reply
                self.resent += self._sent - done
                self.reconnects += 1
                if done:
                    deadline = time.monotonic() + give_up_s
                elif time.monotonic() > deadline:
                    raise SimulationError(f"agent on port {self.port} answers nothing")
                await asyncio.sleep(0.05)
            pending = pending[done:]

    async def _session(self, signals: list[SignalIn]) -> int:
        """One connection; returns how many of ``signals`` got their reply."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        answered = self._sent = 0
        slots = asyncio.Semaphore(self.window)

        async def send() -> None:
            for s in signals:
                await slots.acquire()
                writer.write(s.model_dump_json().encode() + b"\n")
                self._sent += 1
                await writer.drain()
                if self.pace_s:
                    await asyncio.sleep(self.pace_s)

        sender = asyncio.create_task(send(), name=f"firmware_sim.feeder[{self.port}].send")
        try:
            while answered < len(signals):
                line = await reader.readline()
                if not line:
                    raise ConnectionResetError("agent closed the connection")
                reply = json.loads(line)
                s = signals[answered]
                if reply.get("seq") != s.seq:
                    raise SimulationError(f"reply for seq {reply.get('seq')}, expected {s.seq}")
                status, reason = reply["status"], reply.get("reason")
                self.replies.append((s.seq, status, reason))
                self.results.setdefault(s.seq, (status, reason))
                answered += 1
                slots.release()
            await sender
        except _NETWORK_ERRORS as exc:
            log.info("ingest connection to port %d broke: %s", self.port, exc)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_NETWORK_ERRORS):
                await sender
            writer.close()
            with contextlib.suppress(*_NETWORK_ERRORS):
                await writer.wait_closed()
        return answered
