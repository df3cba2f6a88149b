"""Simulated devices packed many to a process: the swarm's load generator.

Each device is what an agent is on the wire: its own broker account and client id
(``<brand>.<device>``, persistent session, a pre-signed offline status as its will), its
own Ed25519 key and device box key, deltas sealed to the hub and signed, strictly
increasing seqs, at most ``inflight`` unacked deltas on the wire, resends after the
agent's ack timeout (doubling, capped at 8x), and a delta is done only when the
hub-signed ack names its seq. The deltas are built (sealed and signed) before the clock
starts: that is the device's cost, not the hub's, and on 2 shared cores the generator
must leave the hub its CPU. For the same reason the hub's signature on acks is checked
on one ack in ``verify_every`` (every ack is decoded and acts on the device's state).

A worker process (``worker_main``) owns a slice of the devices and answers commands from
the coordinator (``bench._swarm_fleet.Workers``) over a pipe.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from protocol import (
    FIELDS,
    HLC,
    Ack,
    BodySealer,
    BoxPrivateKey,
    BoxPublicKey,
    Channel,
    Delta,
    Envelope,
    Op,
    SigningKey,
    Status,
    TwinOps,
    TwinSyncError,
    VerifyKey,
    broadcast_topic,
    decode_body,
    open_envelope,
    packb,
    seal,
    topic,
)

from ._mqtt_lite import LiteClient, Will

__all__ = ["DeviceSpec", "Plan", "WorkerSpec", "split", "usage_fields", "worker_main"]

_ACK_TIMEOUT_S = 10.0  # edge_agent's sync.ack_timeout_s default


@dataclass(frozen=True)
class DeviceSpec:
    """One provisioned device, as its bundle has it."""

    device: str
    product: str
    key_pem: bytes
    password: str
    #: the twin its deltas are about (pseudonymized with the brand key, as on a device)
    twin: str


@dataclass(frozen=True)
class WorkerSpec:
    """A worker's slice of the fleet and where the broker is."""

    host: str
    port: int
    brand: str
    hub_pub: bytes
    hub_box_pub: bytes
    devices: tuple[DeviceSpec, ...]
    inflight: int = 16
    verify_every: int = 16
    connect_concurrency: int = 100


@dataclass(frozen=True)
class Plan:
    """The deltas each device builds: ``deltas`` of ``ops`` ops, their HLCs spread
    evenly over ``span_ms`` ending at ``end_ms``; ``sample`` devices keep every op they
    built so the caller can compare InfluxDB point by point."""

    deltas: int
    ops: int
    end_ms: int
    span_ms: int
    seed: int = 1
    sample: frozenset[str] = frozenset()


def usage_fields(product: str) -> list[str]:
    """The product's shared usage-class fields (what an agent without models sends)."""
    return sorted(
        n
        for n, s in FIELDS.items()
        if s.product == product and s.field_class == "usage" and s.shared
    )


def _value(name: str, rnd: random.Random) -> Any:
    kind = FIELDS[name].type
    if kind == "float":
        return round(rnd.uniform(0, 100), 3)
    if kind == "int":
        return rnd.randrange(10_000)
    if kind == "bool":
        return rnd.random() < 0.5
    return rnd.choice(["eco", "heat", "drama", "news"])


@dataclass
class _Stats:
    sent: int = 0
    resent: int = 0
    acked: int = 0
    acked_ops: int = 0
    rejected: int = 0
    acks: int = 0
    bad_acks: int = 0
    verified_acks: int = 0
    #: wall-clock times (comparable across processes) of the run's first publish and
    #: latest ack
    first_sent: float = 0.0
    last_acked: float = 0.0
    #: seconds from a delta's (last) publish to the ack naming it
    ack_latency: list[float] = field(default_factory=list)


class _Device:
    __slots__ = (
        "attempts",
        "backlog",
        "client",
        "done_ops",
        "inflight",
        "key",
        "next",
        "released",
        "sample_ops",
        "sealer",
        "spec",
        "topic",
        "worker",
    )

    def __init__(self, spec: DeviceSpec, worker: _Worker) -> None:
        self.spec = spec
        self.worker = worker
        self.key = SigningKey.from_bytes(spec.key_pem)
        # A fresh device box key, as a fresh outbox makes one.
        self.sealer = BodySealer(BoxPrivateKey.generate(), BoxPublicKey(worker.spec.hub_box_pub))
        self.topic = topic(worker.spec.brand, spec.device, Channel.DELTA)
        self.client: LiteClient | None = None
        #: (seq, payload, ops) built for this run; ``released`` of them may be sent
        self.backlog: list[tuple[int, bytes, int]] = []
        self.released = 0
        self.next = 0
        #: seq -> (index in backlog, time of last publish)
        self.inflight: dict[int, tuple[int, float]] = {}
        self.attempts: dict[int, int] = {}
        self.done_ops = 0
        self.sample_ops: list[tuple[int, str, Any]] = []

    def status(self, online: bool) -> bytes:
        body = Status(online=online, product=self.spec.product, agent_version="bench-swarm")
        env = Envelope(
            kind="status",
            brand=self.worker.spec.brand,
            device=self.spec.device,
            seq=0,
            kid=self.key.kid,
            sent_ms=time.time_ns() // 1_000_000,
            body=packb(body.to_wire()),
        )
        return seal(env, self.key)

    def build(self, plan: Plan, first_seq: int, rnd: random.Random) -> None:
        fields = usage_fields(self.spec.product)
        brand, device, kid = self.worker.spec.brand, self.spec.device, self.key.kid
        step = max(1, plan.span_ms // max(plan.deltas, 1))
        start = plan.end_ms - step * plan.deltas
        keep = device in plan.sample
        self.backlog, self.released, self.next = [], 0, 0
        self.done_ops, self.sample_ops = 0, []
        now_ms = time.time_ns() // 1_000_000
        for i in range(plan.deltas):
            ms = start + i * step
            ops = []
            for k in range(plan.ops):
                name = fields[(i * plan.ops + k) % len(fields)]
                ops.append(Op(HLC(ms, k).pack(), name, _value(name, rnd)))
            if keep:
                self.sample_ops += [(HLC.unpack(o.hlc).to_ns(), o.field, o.value) for o in ops]
            twins = (TwinOps(self.spec.twin, tuple(ops)),)
            body = packb(Delta.model_construct(twins=twins).to_wire())
            seq = first_seq + i
            env = Envelope("delta", brand, device, seq, kid, now_ms, body)
            self.backlog.append((seq, seal(self.sealer.seal(env), self.key), plan.ops))

    def pump(self, now: float) -> None:
        """Publish released deltas while the window has room (oldest first)."""
        client = self.client
        window = self.worker.spec.inflight
        while len(self.inflight) < window and self.next < self.released and client is not None:
            seq, payload, _ops = self.backlog[self.next]
            client.publish(self.topic, payload, qos=1)
            self.inflight[seq] = (self.next, now)
            self.attempts[seq] = 1
            self.next += 1
            stats = self.worker.stats
            stats.sent += 1
            if not stats.first_sent:
                stats.first_sent = time.time()

    def resend_due(self, now: float) -> None:
        client = self.client
        if client is None:
            return
        for seq, (index, sent) in list(self.inflight.items()):
            attempts = self.attempts.get(seq, 1)
            if now - sent > _ACK_TIMEOUT_S * min(2 ** (attempts - 1), 8):
                client.publish(self.topic, self.backlog[index][1], qos=1)
                self.inflight[seq] = (index, now)
                self.attempts[seq] = attempts + 1
                self.worker.stats.resent += 1

    def on_message(self, where: str, payload: bytes) -> None:
        worker, stats = self.worker, self.worker.stats
        if not where.endswith("/ack"):
            return  # tombstones, consent: none in a bench
        stats.acks += 1
        try:
            signed = open_envelope(payload)
            if stats.acks % worker.spec.verify_every == 0:
                signed.verify(worker.hub_key)
                stats.verified_acks += 1
            env = signed.envelope
            if (env.kind, env.device) != ("ack", self.spec.device):
                raise TwinSyncError("misdirected ack", reason="misdirected")
            ack = decode_body("ack", env.body)
        except TwinSyncError:
            stats.bad_acks += 1
            return
        assert isinstance(ack, Ack)
        now = time.perf_counter()
        stats.last_acked = time.time()
        for seq in ack.seqs:
            entry = self.inflight.pop(seq, None)
            if entry is not None:
                self.attempts.pop(seq, None)
                stats.acked += 1
                ops = self.backlog[entry[0]][2]
                stats.acked_ops += ops
                self.done_ops += ops
                stats.ack_latency.append(now - entry[1])
        for rejection in ack.rejected:
            if self.inflight.pop(rejection.seq, None) is not None:
                stats.rejected += 1
        self.pump(now)


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.hub_key = VerifyKey(spec.hub_pub)
        self.stats = _Stats()
        self.devices = [_Device(d, self) for d in spec.devices]
        self.errors: list[str] = []
        self._pacer: asyncio.Task[None] | None = None
        self._resender: asyncio.Task[None] | None = None

    async def _connect_one(self, device: _Device, gate: asyncio.Semaphore) -> None:
        spec, brand = self.spec, self.spec.brand
        user = f"{brand}.{device.spec.device}"
        async with gate:
            client = LiteClient(user, user, device.spec.password, device.on_message)
            status = topic(brand, device.spec.device, Channel.STATUS)
            for attempt in range(5):
                try:
                    await client.connect(spec.host, spec.port, Will(status, device.status(False)))
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.2 * (attempt + 1))  # listen backlog full: retry
            else:
                raise ConnectionError(f"{user}: broker refused the TCP connection 5 times")
            own = [topic(brand, device.spec.device, c) for c in (Channel.ACK, Channel.DESIRED)]
            own += [broadcast_topic(brand, name) for name in ("tombstone", "consent")]
            await client.subscribe(own)
            client.publish(status, device.status(True), qos=1, retain=True)
            device.client = client

    async def connect(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        gate = asyncio.Semaphore(self.spec.connect_concurrency)
        results = await asyncio.gather(
            *(self._connect_one(d, gate) for d in self.devices), return_exceptions=True
        )
        self.errors += [str(r) for r in results if isinstance(r, BaseException)]
        self._resender = asyncio.create_task(self._resend_loop(), name="swarm.resend")
        return {
            "connected": sum(1 for d in self.devices if d.client is not None),
            "errors": self.errors[:5],
            "seconds": time.perf_counter() - t0,
        }

    def build(self, plan: Plan) -> dict[str, Any]:
        t0 = time.perf_counter()
        rnd = random.Random(plan.seed)
        # Time-derived first seqs, as a fresh agent outbox starts: never below a seq the
        # hub saw from this device in an earlier run.
        first = time.time_ns() // 1_000_000 * 1000
        for d in self.devices:
            d.build(plan, first, rnd)
        self.stats = _Stats()
        built = sum(len(d.backlog) for d in self.devices)
        return {"built": built, "seconds": time.perf_counter() - t0}

    def start(self, rate: float | None) -> None:
        """Release the built deltas: all at once (``rate`` None: flat out, each device
        limited by its window), or ``rate`` deltas/s round-robin over the devices."""
        now = time.perf_counter()
        if rate is None:
            for d in self.devices:
                d.released = len(d.backlog)
                d.pump(now)
            return
        self._pacer = asyncio.create_task(self._pace(rate), name="swarm.pace")

    async def stop(self) -> None:
        """Release nothing more (what is on the wire still gets its acks)."""
        if self._pacer is not None:
            self._pacer.cancel()
            await asyncio.wait([self._pacer])
            self._pacer = None
        for d in self.devices:
            d.released = d.next

    async def _pace(self, rate: float) -> None:
        t0, released = time.perf_counter(), 0
        ring = deque(d for d in self.devices if d.backlog)
        while ring:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            due = int((now - t0) * rate) - released
            for _ in range(due):
                if not ring:
                    break
                d = ring.popleft()
                d.released += 1
                released += 1
                d.pump(now)
                if d.released < len(d.backlog):
                    ring.append(d)

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            for d in self.devices:
                if d.inflight:
                    d.resend_due(now)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        lat = s.ack_latency
        s.ack_latency = []
        return {
            "sent": s.sent,
            "resent": s.resent,
            "acked": s.acked,
            "acked_ops": s.acked_ops,
            "rejected": s.rejected,
            "acks": s.acks,
            "bad_acks": s.bad_acks,
            "verified_acks": s.verified_acks,
            "built": sum(len(d.backlog) for d in self.devices),
            "first_sent": s.first_sent,
            "last_acked": s.last_acked,
            "connected": sum(1 for d in self.devices if d.client and not d.client.closed.is_set()),
            "latency": lat,
        }

    def collect(self) -> dict[str, Any]:
        return {
            "ops": {d.spec.device: d.done_ops for d in self.devices},
            "built_ops": {d.spec.device: sum(b[2] for b in d.backlog) for d in self.devices},
            "sample": {d.spec.device: d.sample_ops for d in self.devices if d.sample_ops},
        }

    async def close(self) -> None:
        for task in (self._pacer, self._resender):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        await asyncio.gather(*(d.client.close() for d in self.devices if d.client is not None))


async def _serve(spec: WorkerSpec, conn: Connection) -> None:
    worker = _Worker(spec)
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, conn.recv)
        if command == "connect":
            conn.send(await worker.connect())
        elif command == "build":
            conn.send(worker.build(arg))
        elif command == "start":
            worker.start(arg)
            conn.send({"started": True})
        elif command == "stop":
            await worker.stop()
            conn.send(worker.snapshot())
        elif command == "stats":
            conn.send(worker.snapshot())
        elif command == "collect":
            conn.send(worker.collect())
        elif command == "close":
            await worker.close()
            conn.send({"closed": True})
            return


def worker_main(spec: WorkerSpec, conn: Connection, nofile: int) -> None:
    """Entry point of a worker process (spawned): serve commands until ``close``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))
    asyncio.run(_serve(spec, conn))


def split(devices: Sequence[DeviceSpec], parts: int) -> list[tuple[DeviceSpec, ...]]:
    """``devices`` dealt round-robin into ``parts`` slices (products spread evenly)."""
    return [tuple(devices[i::parts]) for i in range(parts) if devices[i::parts]]
