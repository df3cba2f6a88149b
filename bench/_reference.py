"""Reference rates measured in the same run: raw InfluxDB writes and the raw broker."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass

import aiohttp
import paho.mqtt.client as mqtt

from protocol import FIELDS, HLC

__all__ = ["RawBroker", "RawInflux", "twin_lines"]


def twin_lines(count: int, *, devices: int = 200, seed: int = 1, start_ms: int = 0) -> list[str]:
    """Lines of exactly the shape the hub writes: measurement twin, 3 tags, one field."""
    rnd = random.Random(seed)
    fields = sorted(FIELDS)
    twins = [f"1-{rnd.getrandbits(128):032x}" for _ in range(devices)]
    start_ms = start_ms or (time.time_ns() // 1_000_000 - 86_400_000)
    lines = []
    for i in range(count):
        d = i % devices
        name = fields[i % len(fields)]
        spec = FIELDS[name]
        if spec.type == "float":
            value = f"{rnd.uniform(0, 50)!r}"
        elif spec.type == "int":
            value = f"{rnd.randrange(1000)}i"
        elif spec.type == "bool":
            value = "true"
        else:
            value = '"eco"'
        ts = HLC(start_ms + i // devices, 0).to_ns()
        lines.append(f"twin,brand=bench,device=dev-{d:04d},twin={twins[d]} {name}={value} {ts}")
    return lines


@dataclass
class RawInflux:
    """Batched line-protocol writes straight to /write: the ceiling the hub is measured against."""

    url: str
    database: str
    #: InfluxDB credentials (the launcher's influxd refuses anonymous requests)
    username: str = ""
    password: str = ""
    batch: int = 5000
    concurrency: int = 2

    async def run(self, lines: list[str]) -> float:
        """Write all ``lines``; return lines per second."""
        headers = {}
        if self.username:
            headers["Authorization"] = aiohttp.encode_basic_auth(self.username, self.password)
        async with aiohttp.ClientSession(headers=headers) as session:
            await session.post(
                f"{self.url}/query", data={"q": f'CREATE DATABASE "{self.database}"'}
            )
            batches = [
                "\n".join(lines[i : i + self.batch]).encode()
                for i in range(0, len(lines), self.batch)
            ]
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for b in batches:
                queue.put_nowait(b)

            async def worker() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    async with session.post(
                        f"{self.url}/write",
                        params={"db": self.database, "precision": "ns"},
                        data=body,
                    ) as resp:
                        if resp.status != 204:
                            raise RuntimeError(
                                f"influx write failed: {resp.status} {await resp.text()}"
                            )

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            return len(lines) / (time.perf_counter() - t0)


@dataclass
class RawBroker:
    """QoS 1 publish -> subscribe through mosquitto with payloads of the delta size."""

    host: str
    port: int

    def run(self, payload_bytes: int, count: int) -> float:
        """Messages per second delivered end to end (publisher to subscriber)."""
        done = threading.Event()
        received = 0
        topic = f"bench/raw/{random.getrandbits(32):08x}"

        def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
            nonlocal received
            received += 1
            if received >= count:
                done.set()

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{topic[-8:]}")
        sub.on_message = on_message
        sub.connect(self.host, self.port)
        sub.subscribe(topic, qos=1)
        sub.loop_start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{topic[-8:]}")
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect(self.host, self.port)
        pub.loop_start()
        time.sleep(0.3)
        payload = random.randbytes(payload_bytes)
        t0 = time.perf_counter()
        for _ in range(count):
            pub.publish(topic, payload, qos=1)
        if not done.wait(120):
            raise RuntimeError(f"raw broker bench: only {received}/{count} messages arrived")
        rate = count / (time.perf_counter() - t0)
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
        return rate
