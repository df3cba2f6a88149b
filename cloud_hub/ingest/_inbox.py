"""A bounded hand-off from paho's network thread to the asyncio pipeline.

paho delivers messages one by one on its own thread. Waking the event loop for every one
(``run_coroutine_threadsafe`` and waiting for the result) costs a full thread round trip
per message; here the thread appends to a deque and wakes the loop only when the consumer
is actually waiting, and the consumer takes whole batches. A semaphore bounds the deque:
when it is full, paho's thread blocks, stops reading the socket, and the broker stops
sending (backpressure all the way to the devices' outboxes).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Many-producer-thread, one-asyncio-consumer bounded queue."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._waiting = False
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the consumer's loop (call from that loop before producers start)."""
        self._loop = loop
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, item: T, timeout: float = 1.0) -> bool:
        """From a producer thread: enqueue, blocking while full; False once closed."""
        while not self._slots.acquire(timeout=timeout):
            if self._closed:
                return False
        with self._lock:
            if self._closed:
                self._slots.release()
                return False
            self._items.append(item)
            wake, self._waiting = self._waiting, False
        if wake and self._loop is not None and self._ready is not None:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop closed under us: the item is moot
                return False
        return True

    def qsize(self) -> int:
        """Items waiting."""
        return len(self._items)

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` items without waiting (frees their slots)."""
        out: list[T] = []
        with self._lock:
            while self._items and len(out) < limit:
                out.append(self._items.popleft())
        for _ in out:
            self._slots.release()
        return out

    async def wait(self) -> None:
        """Return once at least one item is waiting."""
        assert self._ready is not None, "Inbox.bind() first"
        while True:
            with self._lock:
                if self._items:
                    return
                self._waiting = True
                self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        """Drop what is waiting and release blocked producers (they return False)."""
        with self._lock:
            self._closed = True
            dropped = len(self._items)
            self._items.clear()
        for _ in range(dropped):
            self._slots.release()
