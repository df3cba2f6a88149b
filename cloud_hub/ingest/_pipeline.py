"""The hub's ingest loop: batch → verify → merge/store → ack.

One loop per hub instance pulls messages off the MQTT queue, verifies each, gathers the
accepted ops of many messages into one InfluxDB write, and only after that write returned
(durable) publishes the signed acks to devices and PUBACKs the broker. If InfluxDB is down
the write is retried with capped, jittered backoff and nothing is acked: the broker and the
devices keep every message until it is stored. Merge needs no hub state: each op is its
own point (see docs/architecture.md), so at-least-once delivery is exactly-once in effect.
What of a delta may be stored (erased twins, blocked fields, key rotation's aliases,
retired key epochs) is the privacy policy's answer (cloud_hub.privacy.IngestPolicy), asked
per delta and again for each batch just before it is written.

Once a batch is durable, and before anything of it is acked, its values are merged into
the twin query index (cloud_hub.store.TwinIndex) in one state-store transaction. If that
fails the batch is not acked (ingest stops and the supervisor restarts it): the broker
redelivers it, InfluxDB takes the same points again as a no-op and the index gets them,
so the index never lacks what InfluxDB holds. The values indexed are the ops the batch's
lines were built from, or, when the lines were changed after they were built (a twin
erased or aliased meanwhile), the lines as written, parsed back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cloud_hub._config import InfluxSettings
from cloud_hub._downlink import seal_downlink
from cloud_hub._errors import StoreError
from cloud_hub._metrics import Metrics
from cloud_hub.privacy import Generation, IngestPolicy, Stamps
from cloud_hub.store import (
    IndexOp,
    InfluxStore,
    Observe,
    TwinIndex,
    consent_line,
    device_line,
    parse_twin_lines,
    twin_lines,
)
from protocol import (
    Ack,
    Channel,
    Clock,
    Delta,
    HubSealer,
    Rejection,
    SigningKey,
    Status,
    TwinOps,
    topic,
)

from ._events import announcements, segment_ops
from ._inbox import Inbox
from ._mqtt import HubMqtt, Incoming
from ._verify import Accepted, Rejected, Verifier

__all__ = ["Pipeline"]

log = logging.getLogger("cloud_hub.pipeline")
_MAX_ACK_SEQS = 4096
# Messages moved from the inbox per step: large enough to amortise, small enough that a
# batch stops close to batch_max_lines.
_TAKE = 256

Verdict = Accepted | Rejected


@dataclass
class _Batch:
    #: what the privacy policy knew when the batch was built (re-checked before writing)
    generation: Generation
    lines: list[str] = field(default_factory=list)
    incoming: list[Incoming] = field(default_factory=list)
    written: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    rejected: dict[tuple[str, str], list[Rejection]] = field(
        default_factory=lambda: defaultdict(list)
    )
    replayed: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    #: brand -> segment ops stored by this batch (announced once the write is durable)
    segments: dict[str, list[list[object]]] = field(default_factory=lambda: defaultdict(list))
    #: (brand, device, twins' ops) as admitted: what the lines were built from
    admitted: list[tuple[str, str, tuple[TwinOps, ...]]] = field(default_factory=list)
    ops: int = 0
    deltas: int = 0


class Pipeline:
    """Owns the batching loop; run :meth:`run` as a task and cancel it to stop."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        mqtt: HubMqtt,
        store: InfluxStore,
        verifier: Verifier,
        hub_key: SigningKey,
        metrics: Metrics,
        clock: Clock,
        policy: IngestPolicy,
        index: TwinIndex | None,
        observe: Observe | None = None,
    ) -> None:
        self._policy = policy
        #: what watches the index merge in its transaction (trigger rules, cloud_hub.triggers)
        self._observe = observe
        #: the twin query index (None: this instance does not keep it, index.enabled)
        self._index = index
        self._mqtt = mqtt
        self._store = store
        self._verifier = verifier
        self._key = hub_key
        self._sealer = HubSealer(hub_key)
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._lines_per_msg = 1.0  # running estimate, sizes the inbox takes

    async def run(self) -> None:
        """Forever: gather a batch, hand it to a writer. Cancel to stop.

        Up to ``influx.write_concurrency`` batches are written at once, so verifying the
        next batch overlaps with InfluxDB storing the previous one. Each batch is acked
        on its own once its write returned; cancellation leaves unacked data on the broker.
        """
        inbox = self._mqtt.inbox
        writers = asyncio.Semaphore(self._settings.write_concurrency)
        # Signature checks release the GIL (OpenSSL), so one verifier thread runs them in
        # parallel with line building here; it is ours alone and shut down on the way out.
        pool = ThreadPoolExecutor(1, thread_name_prefix="cloud_hub.verify")
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    await inbox.wait()
                    batch = await self._collect(inbox, pool)
                    self._metrics.set("twinsync_hub_queue_depth", inbox.qsize())
                    await writers.acquire()
                    tg.create_task(self._commit(batch, writers), name="cloud_hub.write")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    async def _collect(self, inbox: Inbox[Incoming], pool: ThreadPoolExecutor) -> _Batch:
        """One batch: until ``batch_max_lines`` or ``batch_max_wait_ms`` after the first.

        Chunk k+1 is verified on the pool while chunk k's lines are built here.
        """
        # A timeout: the loop's monotonic time, which a wall-clock step cannot stretch.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.batch_max_wait_ms / 1000
        max_lines = self._settings.batch_max_lines
        batch = _Batch(generation=self._policy.generation)
        pending: asyncio.Future[list[Verdict]] | None = None
        while True:
            room = max_lines - len(batch.lines)
            # Take about as many messages as the batch has room for, judging by the lines
            # per message seen so far, so that 1000-op deltas do not overshoot the batch.
            items = (
                inbox.take(max(1, min(_TAKE, int(room / self._lines_per_msg)))) if room > 0 else []
            )
            upcoming = loop.run_in_executor(pool, self._verify_all, items) if items else None
            if pending is not None:
                before, verdicts = len(batch.lines), await pending
                for verdict in verdicts:
                    self._add(batch, verdict)
                seen = (len(batch.lines) - before) / len(verdicts)
                self._lines_per_msg = max(1.0, 0.8 * self._lines_per_msg + 0.2 * seen)
            pending = upcoming
            if pending is not None:
                continue
            remaining = deadline - loop.time()
            if len(batch.lines) >= max_lines or remaining <= 0:
                return batch
            try:
                async with asyncio.timeout(remaining):
                    await inbox.wait()
            except TimeoutError:
                return batch

    def _verify_all(self, items: list[Incoming]) -> list[Verdict]:
        verify = self._verifier.verify
        return [verify(incoming) for incoming in items]

    def _add(self, batch: _Batch, verdict: Verdict) -> None:
        incoming = verdict.incoming
        batch.incoming.append(incoming)
        kind = incoming.topic.rsplit("/", 1)[-1]
        self._metrics.inc("twinsync_hub_messages_total", kind=kind)
        if isinstance(verdict, Rejected):
            self._reject(batch, verdict)
            return
        key = (verdict.brand, verdict.device)
        skew = incoming.received_ms - verdict.sent_ms
        self._metrics.set("twinsync_hub_device_skew_ms", skew)
        if isinstance(verdict.body, Delta):
            # What the customer's rights let through (dropped ops are still acked, so the
            # device lets go of them).
            twins, consent = self._policy.admit(verdict.brand, verdict.device, verdict.body)
            batch.ops += twin_lines(verdict.brand, verdict.device, twins, batch.lines)
            if twins:
                batch.admitted.append((verdict.brand, verdict.device, twins))
            for entry in consent:
                batch.lines.append(consent_line(verdict.brand, verdict.device, entry))
            # A byte search (C speed) spares the per-op scan for the many deltas that
            # carry no segment (field names are plain msgpack strings in the opened body).
            if b".segment" in verdict.body_bytes:
                segment_ops(verdict.device, twins, batch.segments[verdict.brand])
            batch.deltas += 1
            batch.written[key].append(verdict.seq)
            fields: dict[str, bool | int | str] = {"last_seq": verdict.seq, "skew_ms": skew}
        else:
            status: Status = verdict.body
            fields = {
                "online": status.online,
                "outbox_depth": status.outbox_depth,
                "outbox_bytes": status.outbox_bytes,
                "dropped": status.dropped,
                "skew_ms": skew,
                "models": ",".join(status.models),
                "model_failures": ";".join(
                    f"{name}={why}" for name, why in sorted(status.model_failures.items())
                ),
            }
        batch.lines.append(device_line(verdict.brand, verdict.device, fields, incoming.received_ms))

    def _reject(self, batch: _Batch, verdict: Rejected) -> None:
        self._metrics.inc("twinsync_hub_rejected_total", reason=verdict.reason)
        log_fn = log.info if verdict.replay else log.warning
        log_fn(
            "rejected message on %s: reason=%s device=%s seq=%s: %s",
            verdict.incoming.topic,
            verdict.reason,
            verdict.device,
            verdict.seq,
            verdict.detail,
        )
        if verdict.brand is None or verdict.device is None or verdict.seq is None:
            return
        key = (verdict.brand, verdict.device)
        if verdict.replay:
            batch.replayed[key].append(verdict.seq)
        elif verdict.ack_rejected:
            batch.rejected[key].append(Rejection(seq=verdict.seq, reason=verdict.reason))

    async def _commit(self, batch: _Batch, writers: asyncio.Semaphore) -> None:
        t0 = time.perf_counter()  # a duration: monotonic, not the hub's (wall) clock
        written: list[tuple[list[str], Stamps]] = []
        try:
            await self._write_until_durable(batch.lines, batch.generation, written)
            elapsed = time.perf_counter() - t0
            # Still holding the writer's slot: batches waiting for the index count against
            # influx.write_concurrency like those waiting for InfluxDB (bounded).
            if self._index is not None and written:
                await self._to_index(batch, written)
        finally:
            writers.release()
        for (brand, device), seqs in batch.written.items():
            for seq in seqs:
                self._verifier.windows.mark(brand, device, seq)
        self._metrics.inc("twinsync_hub_batch_seconds_total", elapsed)
        if batch.lines:
            self._metrics.inc("twinsync_hub_write_batches_total")
            self._metrics.inc("twinsync_hub_lines_written_total", len(batch.lines))
        self._metrics.inc("twinsync_hub_ops_written_total", batch.ops)
        self._metrics.inc("twinsync_hub_deltas_written_total", batch.deltas)
        self._send_acks(batch)
        for brand, rows in batch.segments.items():
            # Sealed and signed for the other instances: the broker sees no twin or device.
            for where, payload in announcements(self._sealer, brand, rows, self._clock.now_ms()):
                self._mqtt.publish(where, payload, qos=1)
        for incoming in batch.incoming:
            self._mqtt.ack(incoming)

    async def _to_index(self, batch: _Batch, written: list[tuple[list[str], Stamps]]) -> None:
        """Merge what the batch wrote into the twin query index (module docstring)."""
        assert self._index is not None
        ops: list[IndexOp]
        if len(written) == 1 and written[0][0] is batch.lines:
            # The lines went out as built: index the ops they were built from.
            ops = [
                (brand, twin_ops.twin, device, op[1], op[0], op[2])
                for brand, device, twins in batch.admitted
                for twin_ops in twins
                for op in twin_ops.ops
            ]
        else:
            ops = [op for lines, _stamps in written for op in parse_twin_lines(lines)]
        if not ops:
            return
        # Chunks checked at different stamps (a refused batch, halved): look everything up.
        stamps = {stamps for _lines, stamps in written}
        seen = stamps.pop() if len(stamps) == 1 else None
        t0 = time.perf_counter()
        taken = await asyncio.to_thread(
            self._index.apply, ops, admit=self._policy.index_admit(seen), observe=self._observe
        )
        self._metrics.inc("twinsync_hub_index_seconds_total", time.perf_counter() - t0)
        self._metrics.inc("twinsync_hub_index_ops_total", taken)
        if taken < len(ops):
            self._metrics.inc("twinsync_hub_index_ops_dropped_total", len(ops) - taken)

    async def _write_until_durable(
        self, lines: list[str], generation: Generation, written: list[tuple[list[str], Stamps]]
    ) -> None:
        """Write ``lines`` (re-checked against the privacy policy before every try) until
        InfluxDB has them; append what was written and the policy's stamps it was checked
        at to ``written``."""
        delay = 0.2
        while True:
            # Twins erased, aliased or fields blocked since these lines were built (or since
            # the last try) are applied now: cloud_hub.privacy._policy. The stamps first:
            # the re-check is then at least as new as they are.
            stamps = self._policy.stamps()
            checked = self._policy.recheck(lines, generation)
            if checked is None:
                return  # every line was of a twin erased meanwhile
            lines, generation = checked
            try:
                await self._store.write(lines)
                self._metrics.set("twinsync_hub_store_up", 1)
                written.append((lines, stamps))
                return
            except StoreError as exc:
                self._metrics.inc("twinsync_hub_write_errors_total")
                self._metrics.set("twinsync_hub_store_up", 0)
                if not exc.retryable and len(lines) > 1:
                    # A refused batch (a field type conflict after a catalog change, a body
                    # over the server's limit): halve it until the refused lines are
                    # isolated, so one bad point cannot block the rest.
                    half = len(lines) // 2
                    await self._write_until_durable(lines[:half], generation, written)
                    await self._write_until_durable(lines[half:], generation, written)
                    return
                if not exc.retryable:
                    log.error("InfluxDB refused a point for good, dropping it: %s", exc)
                    return
                log.warning("InfluxDB write failed (retry in %.1fs): %s", delay, exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 5.0)

    def _send_acks(self, batch: _Batch) -> None:
        now = self._clock.now_ms()
        keys = set(batch.written) | set(batch.rejected) | set(batch.replayed)
        for brand, device in keys:
            seqs = sorted(
                {*batch.written.get((brand, device), []), *batch.replayed.get((brand, device), [])}
            )
            rejected = batch.rejected.get((brand, device), [])
            for i in range(0, max(len(seqs), len(rejected), 1), _MAX_ACK_SEQS):
                body = Ack(
                    seqs=tuple(seqs[i : i + _MAX_ACK_SEQS]),
                    rejected=tuple(rejected[i : i + _MAX_ACK_SEQS]),
                    hub_ms=now,
                )
                message = seal_downlink(self._key, "ack", brand, device, body, sent_ms=now)
                self._mqtt.publish(topic(brand, device, Channel.ACK), message)
                self._metrics.inc("twinsync_hub_acks_sent_total")
