"""Hub ingest end to end: signed deltas queued in the broker, drained into InfluxDB.

The deltas are published while no hub is connected (its persistent shared-subscription
session queues them in mosquitto), then a hub starts and the clock runs until every delta
is durable in InfluxDB (the hub counts a delta as written only after the write returned).
So the figure is pure hub work: receive, size/schema/signature/registry/replay checks,
line building, batched writes, signed acks and PUBACKs. With ``sealed=True`` every delta
body is sealed to the hub's box key (one device box key per device, as an agent's outbox
holds), so the hub also opens each body: the sealed vs unsealed rows show that cost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from cloud_hub import Hub, HubConfig, load_hub_config, provision_devices
from protocol import (
    FIELDS,
    HLC,
    PRODUCTS,
    BodySealer,
    BoxPrivateKey,
    BoxPublicKey,
    Channel,
    Delta,
    Envelope,
    Op,
    SigningKey,
    TwinOps,
    packb,
    pseudonymize,
    seal,
    topic,
)

__all__ = ["HubIngestResult", "hub_ingest", "messages", "publish_all"]

_BRAND = "bench"


@dataclass(frozen=True)
class HubIngestResult:
    """One measured drain."""

    ops_per_delta: int
    deltas: int
    ops: int
    lines: int
    seconds: float
    payload_bytes: float
    sealed: bool = False
    #: seconds the hub spent merging batches into the twin query index (0: it was off)
    index_seconds: float = 0.0
    #: whether the hub kept the twin query index
    index: bool = True

    @property
    def values_per_s(self) -> float:
        return self.ops / self.seconds

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds

    @property
    def deltas_per_s(self) -> float:
        return self.deltas / self.seconds


def _value(field: str, rnd: random.Random) -> object:
    kind = FIELDS[field].type
    if kind == "float":
        return round(rnd.uniform(0, 100), 2)
    if kind == "int":
        return rnd.randrange(10_000)
    if kind == "bool":
        return rnd.random() < 0.5
    return rnd.choice(["eco", "heat", "drama", "news"])


def messages(
    bundles: dict[str, Path],
    deltas: int,
    ops_per_delta: int,
    seed: int,
    sealed: bool = False,
    twins_per_device: int = 1,
) -> list[tuple[str, bytes]]:
    """Real signed delta envelopes (bodies sealed to the hub if ``sealed``), round-robin
    over the devices, HLCs in the recent past; each device's deltas go round its
    ``twins_per_device`` customers."""
    rnd = random.Random(seed)
    devices = sorted(bundles)
    keys = {
        d: SigningKey.from_bytes((bundles[d].parent / "device.key").read_bytes()) for d in devices
    }
    brand_key = (bundles[devices[0]].parent / "brand.key").read_bytes()
    hub_box = BoxPublicKey.from_hex((bundles[devices[0]].parent / "hub-box.pub").read_text())
    sealers = {d: BodySealer(BoxPrivateKey.generate(), hub_box) for d in devices}
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - 3_600_000
    out = []
    for i in range(deltas):
        device = devices[i % len(devices)]
        seq = i // len(devices) + 1
        product = device.split("-", 1)[0]
        fields = [f for f in FIELDS if FIELDS[f].product == product]
        customer = f"customer-{device}-{seq % twins_per_device}@example.com"
        twin = pseudonymize(brand_key, 1, customer)
        base = start_ms + i  # unique per delta, so no two ops share a series point
        ops = tuple(
            Op(HLC(base, k).pack(), fields[k % len(fields)], _value(fields[k % len(fields)], rnd))
            for k in range(ops_per_delta)
        )
        body = packb(Delta(twins=(TwinOps(twin, ops),)).to_wire())
        env = Envelope(
            kind="delta",
            brand=_BRAND,
            device=device,
            seq=seq,
            kid=keys[device].kid,
            sent_ms=now_ms,
            body=body,
        )
        if sealed:
            env = sealers[device].seal(env)
        out.append((topic(_BRAND, device, Channel.DELTA), seal(env, keys[device])))
    return out


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish every (topic, payload) at QoS 1 and wait until the broker has them all."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{id(messages)}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(120)
    finally:
        client.loop_stop()
        client.disconnect()


def _config(
    tmp: Path, mqtt_port: int, influx: Mapping[str, str], name: str, index: bool = True
) -> HubConfig:
    return load_hub_config(
        None,
        {
            "mqtt": {"port": mqtt_port, "client_id": f"hub-{name}", "shared_group": name},
            "influx": {**influx, "database": name},
            "api": {"port": 0},
            "registry": {"path": str(tmp / "registry.sqlite")},
            "keys": {"secrets_dir": str(tmp / "secrets")},
            "index": {"enabled": index},
        },
        environ={},
    )


async def hub_ingest(
    tmp: Path,
    mqtt_port: int,
    influx: Mapping[str, str],
    *,
    devices: int,
    deltas: int,
    ops_per_delta: int,
    seed: int = 1,
    sealed: bool = False,
    tag: str = "",
    index: bool = True,
    twins_per_device: int = 1,
) -> HubIngestResult:
    """Queue ``deltas`` signed (and, if ``sealed``, sealed) deltas in the broker, then time
    one hub draining them. ``influx`` is the hub's ``[influx]`` section (url,
    credentials); the database is chosen here (``tag`` keeps runs of the same shape in
    databases of their own). ``index`` off: the hub does not keep the twin query index
    (the reference its cost is measured against)."""
    name = f"bench_ingest{tag}_{ops_per_delta}{'_sealed' if sealed else ''}"
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    config = _config(tmp, mqtt_port, influx, name, index)
    products = list(PRODUCTS)
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        _BRAND,
        [
            (f"{products[i % len(products)]}-{i:05d}", products[i % len(products)])
            for i in range(devices)
        ],
        tmp / "bundles",
        "127.0.0.1",
        mqtt_port,
    )
    batch = await asyncio.to_thread(
        messages, bundles, deltas, ops_per_delta, seed, sealed, twins_per_device
    )
    # First connection creates the persistent session and shared subscription.
    async with Hub(config) as hub:
        await hub.ready.wait()
    await asyncio.to_thread(publish_all, mqtt_port, batch)
    t0 = time.perf_counter()  # start-up (connect, checks) counts against the hub
    async with Hub(config) as hub:
        while hub.metrics.get("twinsync_hub_deltas_written_total") < deltas:
            rejected = hub.metrics.get("twinsync_hub_rejected_total")
            if rejected:
                raise RuntimeError(f"bench deltas were rejected ({rejected:.0f}); see the log")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - t0
        lines = int(hub.metrics.get("twinsync_hub_lines_written_total"))
        ops = int(hub.metrics.get("twinsync_hub_ops_written_total"))
        index_s = hub.metrics.get("twinsync_hub_index_seconds_total")
    size = sum(len(p) for _, p in batch) / len(batch)
    return HubIngestResult(ops_per_delta, deltas, ops, lines, seconds, size, sealed, index_s, index)
