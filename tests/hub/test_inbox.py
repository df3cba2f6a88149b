"""The paho-thread → asyncio hand-off: order, batching, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import threading

from cloud_hub.ingest import Inbox


async def test_items_arrive_in_order_in_batches() -> None:
    inbox: Inbox[int] = Inbox(100)
    inbox.bind(asyncio.get_running_loop())
    producer = threading.Thread(target=lambda: [inbox.put(i) for i in range(50)])
    producer.start()
    got: list[int] = []
    while len(got) < 50:
        await inbox.wait()
        got += inbox.take(16)
    producer.join()
    assert got == list(range(50))
    assert inbox.qsize() == 0


async def test_a_full_inbox_blocks_the_producer_until_taken() -> None:
    inbox: Inbox[int] = Inbox(3)
    inbox.bind(asyncio.get_running_loop())
    done = threading.Event()

    def produce() -> None:
        for i in range(5):
            inbox.put(i)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    await asyncio.sleep(0.2)
    assert not done.is_set()  # blocked on the 4th item: that is the backpressure
    assert inbox.qsize() == 3
    assert inbox.take(10) == [0, 1, 2]
    await asyncio.to_thread(done.wait, 5)
    assert inbox.take(10) == [3, 4]
    producer.join()


async def test_close_releases_a_blocked_producer() -> None:
    inbox: Inbox[int] = Inbox(1)
    inbox.bind(asyncio.get_running_loop())
    results: list[bool] = []
    producer = threading.Thread(target=lambda: results.extend(inbox.put(i, 0.05) for i in range(3)))
    producer.start()
    await asyncio.sleep(0.2)
    inbox.close()
    await asyncio.to_thread(producer.join, 5)
    assert not producer.is_alive()
    assert results[0] is True
    assert results[-1] is False
    assert inbox.qsize() == 0
