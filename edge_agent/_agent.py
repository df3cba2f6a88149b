"""The edge agent: ingest → validate → pseudonymize → consent → twin → delta → outbox → sync.

    async with Agent(load_config("agent.toml")) as agent:
        results = await agent.ingest_many(signals)   # after this, they are durable

One committer task turns queued signals into ops and commits them with the state in one
SQLite transaction (group commit: concurrent or pipelined callers share a commit); the
uplink task ships the outbox to the hub. Both are owned by the agent's TaskGroup and
stopped on exit, after the last queued signals are committed and the offline status is
published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from protocol import (
    Clock,
    ConsentEntry,
    Delta,
    SignalIn,
    SystemClock,
    packb,
)

from ._config import AgentConfig, Keys
from ._consent import ConsentGate
from ._infer import ModelRunner
from ._ingest import IngestServer
from ._offers import Exposure, OfferInbox
from ._outbox import Outbox
from ._privacy import DevicePrivacy
from ._sync import Uplink
from ._tags import TagBook
from ._twin import LOCAL_ONLY, IngestResult, TwinBook

if TYPE_CHECKING:
    from ._models import ModelStore
    from ._rollout import ModelUpdater

__all__ = ["Agent"]

log = logging.getLogger("edge_agent")
_QUEUE_ITEMS = 4096


@dataclass
class _Work:
    signals: Sequence[SignalIn]
    future: asyncio.Future[list[IngestResult]]
    urgent: bool


class Agent:
    """One device's agent. Use as an async context manager."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock | None = None,
        on_exposure: Callable[[Exposure], None] | None = None,
    ) -> None:
        self.config = config
        #: the local application's hand-off for the strategy lab's offers (None: this
        #: device shows no offers and does not subscribe to them; edge_agent._offers)
        self._on_exposure = on_exposure
        self.clock: Clock = clock or SystemClock()
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "accepted",
                "duplicate",
                "rejected",
                "ops",
                "deltas_sealed",
                "deltas_sent",
                "deltas_acked",
                "deltas_rejected_by_hub",
                "dropped",
                "resends",
                "bad_acks",
            ),
            0,
        )
        self._keys: Keys | None = None
        self._outbox: Outbox | None = None
        self._book: TwinBook | None = None
        self._uplink: Uplink | None = None
        self._ingest: IngestServer | None = None
        self._queue: asyncio.Queue[_Work] = asyncio.Queue(_QUEUE_ITEMS)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._next_seq = 0
        self._models: ModelStore | None = None
        self._privacy: DevicePrivacy | None = None
        self._updater: ModelUpdater | None = None
        #: the behaviour tag catalog in use (None: models, and so tags, are off)
        self._tags: TagBook | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> Agent:
        cfg = self.config
        self._keys = cfg.keys()
        self._outbox = Outbox(cfg.outbox.path, cfg.outbox.max_bytes, cfg.outbox.max_age_s * 1000)
        # Every part gets its collaborators as it is made, so the order below is the
        # order of need: models before the twin book that runs them, the privacy
        # handlers and the model updater before the uplink that feeds them.
        runner: ModelRunner | None = None
        if cfg.models.enabled:
            from ._models import BUILTIN_MODELS, ModelStore  # onnxruntime: only when used

            store = ModelStore(
                cfg.models.dir, cfg.device.product, self._keys.hub, builtin=BUILTIN_MODELS
            )
            self._tags = TagBook(
                hub_keys=self._keys.hub, stats=self.stats, freshness=self._outbox.freshness
            )
            runner = ModelRunner(
                store,
                cfg.device.product,
                cfg.models.every_s * 1000,
                cfg.device.timezone,
                tags=self._tags,
            )
            self._models = store
            log.info("models serving: %s", ", ".join(sorted(store.running().values())) or "none")
        self._book = TwinBook(
            self._keys.brand_key,
            cfg.pseudonym.epoch,
            previous=self._keys.previous,
            gate=ConsentGate(cfg.consent.optional_default),
            local_only=LOCAL_ONLY | frozenset(cfg.minimise.keep_local),
            models=runner,
        )
        # A time-derived first seq: a device whose storage was wiped never reuses old seqs.
        self._next_seq, self.stats["dropped"] = self._outbox.load(
            self._book, self.clock.now_ms() * 1000
        )
        self._privacy = DevicePrivacy(
            book=self._book,
            outbox=self._outbox,
            clock=self.clock,
            stats=self.stats,
            product=cfg.device.product,
            seal=lambda: self._commit([]),
        )
        # Set by the model updater when what runs changed: the uplink publishes the status.
        status_changed = asyncio.Event()
        if self._models is not None:
            from ._rollout import ModelUpdater

            self._updater = ModelUpdater(
                store=self._models,
                stats=self.stats,
                on_change=status_changed.set,
                fetch_timeout_s=cfg.models.fetch_timeout_s,
                ca_file=cfg.models.ca_file,
            )
        self._uplink = Uplink(
            config=cfg,
            keys=self._keys,
            outbox=self._outbox,
            clock=self.clock,
            stats=self.stats,
            status_extra=self._status_extra,
            status_changed=status_changed,
            models=self._models,
            updater=self._updater,
            on_consent=self._privacy.consent_from_hub,
            on_tombstones=self._privacy.forget,
            on_tags=None if self._tags is None else self._tags.offer,
            on_offer=None
            if self._on_exposure is None
            else OfferInbox(
                book=self._book,
                freshness=self._outbox.freshness,
                stats=self.stats,
                deliver=self._on_exposure,
            ).receive,
        )
        tag = f"edge_agent[{cfg.device.id}]"
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tasks = [
            self._tg.create_task(self._commit_loop(), name=f"{tag}.commit"),
            self._tg.create_task(self._uplink.run(), name=f"{tag}.uplink"),
        ]
        if self._updater is not None:
            self._tasks.append(self._tg.create_task(self._updater.run(), name=f"{tag}.models"))
        if cfg.ingest.port or cfg.ingest.unix_socket:
            ingest = IngestServer(
                submit=self.ingest,
                local=self._privacy.local_request,
                host=cfg.ingest.host,
                port=cfg.ingest.port,
                unix_socket=cfg.ingest.unix_socket,
                max_line_bytes=cfg.ingest.max_line_bytes,
            )
            try:
                await ingest.__aenter__()
            except BaseException as exc:
                # The listener cannot bind (port in use, socket held by another agent):
                # stop what already runs, so the caller sees this one error, not the
                # sync tasks' teardown at interpreter exit.
                try:
                    await self.__aexit__(type(exc), exc, exc.__traceback__)
                except Exception:
                    log.exception("stopping after a failed start failed too")
                raise
            self._ingest = ingest
        log.info(
            "agent %s/%s started; %d deltas in outbox",
            cfg.device.brand,
            cfg.device.id,
            self._outbox.depth,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._ingest is not None:
                await self._ingest.__aexit__(None, None, None)
            # Commit what firmware already handed us, then let the uplink say goodbye.
            if self._tasks and not self._tasks[0].done():
                try:
                    async with asyncio.timeout(10):
                        await self.flush()
                except Exception:
                    # Shutdown must go on (offline status, closing the file); what was not
                    # committed was never acknowledged to firmware, so it will be re-sent.
                    log.exception("final flush at shutdown failed")
            if self._uplink is not None:
                await self._uplink.close()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await asyncio.shield(self._tasks[1])
            for task in self._tasks:
                task.cancel()
            if self._tg is not None:
                # Not suppressed: a task that crashed (anything but our own cancellation)
                # surfaces here as an ExceptionGroup instead of vanishing at shutdown. The
                # caller's own exception is not handed in, so it propagates unwrapped.
                await self._tg.__aexit__(None, None, None)
        finally:
            if self._outbox is not None:
                self._outbox.close()

    # -- public API --------------------------------------------------------------------
    @property
    def ingest_port(self) -> int:
        """The local ingest TCP port (0 when not serving TCP)."""
        return self._ingest.port if self._ingest else 0

    async def ingest(self, signal: SignalIn) -> IngestResult:
        """Submit one signal; returns once its effect is durable (shares a group commit)."""
        return (await self._enqueue([signal], urgent=False))[0]

    async def ingest_many(self, signals: Sequence[SignalIn]) -> list[IngestResult]:
        """Submit signals in order; one commit; results in the same order."""
        return await self._enqueue(signals, urgent=True)

    async def flush(self) -> None:
        """Commit everything queued now."""
        await self._enqueue([], urgent=True)

    def outbox_depth(self) -> int:
        """Deltas sealed but not yet acked by the hub."""
        return self._outbox.depth if self._outbox else 0

    async def drained(self, timeout: float) -> bool:  # noqa: ASYNC109 - public API name
        """Wait until everything submitted is committed and acked; False on timeout."""
        assert self._uplink is not None
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
                while self.outbox_depth():
                    self._uplink.acked.clear()
                    if not self.outbox_depth():
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await self._uplink.acked.wait()
        except TimeoutError:
            return False
        return True

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Rejected signals counted per validation reason (``stats["rejected"]`` is the sum)."""
        return dict(self._book.rejected) if self._book else {}

    def twin_value(self, twin: str, field: str) -> object:
        """The device's own persisted view of a twin field (local view, tests)."""
        return self._outbox.state_value(twin, field) if self._outbox else None

    def set_consent(self, subject: str, purposes: Mapping[str, bool], notice: str) -> ConsentEntry:
        """Record a consent choice made on this device (see :class:`DevicePrivacy`)."""
        return self._privacy_or_fail().set_consent(subject, purposes, notice)

    def set_fields(
        self, subject: str, suppress: Sequence[str] = (), restore: Sequence[str] = ()
    ) -> None:
        """The user's own suppression of twin fields on this device (see
        :class:`DevicePrivacy`)."""
        self._privacy_or_fail().set_fields(subject, suppress, restore)

    def twin_of(self, subject: str) -> str:
        """The twin id of one of this device's users (how the local application matches
        an offer's twin to its user)."""
        if self._book is None:
            raise RuntimeError("agent is not running (use 'async with Agent(...)')")
        return self._book.twin_of(subject)

    def consent_state(self, subject: str) -> dict[str, bool]:
        """The user's current choice per optional purpose (defaults filled in)."""
        return self._privacy_or_fail().consent_state(subject)

    def privacy_view(self, subject: str) -> dict[str, Any]:
        """The device's privacy page for one user (see :class:`DevicePrivacy`)."""
        return self._privacy_or_fail().view(subject)

    # -- internals ---------------------------------------------------------------------
    def _privacy_or_fail(self) -> DevicePrivacy:
        if self._privacy is None:
            raise RuntimeError("agent is not running (use 'async with Agent(...)')")
        return self._privacy

    def _status_extra(self) -> dict[str, int]:
        return {
            "dropped": self.stats["dropped"],
            "rejected": self.stats["rejected"],
            "last_seq": max(self._next_seq - 1, 0),
        }

    async def _enqueue(self, signals: Sequence[SignalIn], *, urgent: bool) -> list[IngestResult]:
        if not self._tasks or self._tasks[0].done():
            raise RuntimeError("agent is not running (use 'async with Agent(...)')")
        future: asyncio.Future[list[IngestResult]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Work(signals, future, urgent))
        return await future

    async def _commit_loop(self) -> None:
        cfg = self.config
        max_wait = cfg.sync.flush_interval_ms / 1000
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].signals)
            deadline = asyncio.get_running_loop().time() + max_wait
            while count < cfg.sync.max_ops_per_delta:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    count += len(batch[-1].signals)
                    continue
                if any(w.urgent for w in batch):
                    break
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._queue.get())
                        count += len(batch[-1].signals)
                except TimeoutError:
                    break
            try:
                results = self._commit(batch)
            except Exception as exc:
                for work in batch:
                    if not work.future.done():
                        work.future.set_exception(exc)
                raise
            for work, result in zip(batch, results, strict=True):
                if not work.future.done():
                    work.future.set_result(result)

    def _commit(self, batch: list[_Work]) -> list[list[IngestResult]]:
        assert self._book is not None
        assert self._outbox is not None
        assert self._uplink is not None
        v = self.config.validation
        now = self.clock.now_ms()
        out: list[list[IngestResult]] = []
        for work in batch:
            results = [
                self._book.apply(s, now, v.max_signal_age_s * 1000, v.max_clock_ahead_s * 1000)
                for s in work.signals
            ]
            for r in results:
                self.stats[r.status] += 1
            out.append(results)
        ops = self._book.pending_ops
        consent, self._book.consent_pending = self._book.consent_pending, []
        links, self._book.links_pending = self._book.links_pending, []
        bodies, counts = [], []
        sealed = self._book.take_pending(self.config.sync.max_ops_per_delta)
        if (consent or links) and not sealed:
            sealed = [()]  # a delta that carries only consent entries or twin links
        for i, twins in enumerate(sealed):
            delta = Delta.model_construct(
                twins=twins,
                consent=tuple(consent) if i == 0 else (),
                links=tuple(links) if i == 0 else (),
            )
            bodies.append(packb(delta.to_wire()))
            counts.append(sum(len(t.ops) for t in twins))
        self._outbox.commit(self._book, bodies, counts, self._next_seq, now, consent, links)
        if links:
            log.info(
                "key rotation: %d twins carried over to epoch %d", len(links), self._book.epoch
            )
        self._next_seq += len(bodies)
        self.stats["ops"] += ops
        self.stats["deltas_sealed"] += len(bodies)
        dropped = self._outbox.enforce_bounds(now)
        if dropped:
            self.stats["dropped"] += dropped
        if bodies:
            self._uplink.wake.set()
        return out
