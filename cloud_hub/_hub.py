"""The hub service: MQTT ingest pipeline + HTTP API, as one async context manager.

    async with Hub(load_hub_config("hub.toml")) as hub:
        print(hub.api_url)
        await hub.wait()          # until a fatal error; cancel to stop

It holds no state two instances could disagree on: twin state lives in InfluxDB, devices
and the rest of the shared state in the state store (``config.state``: a SQLite file on
one host, PostgreSQL across hosts), and the replay windows are a per-instance
optimisation seeded from InfluxDB (a write repeated by another instance is a no-op).

This is the composition root: the state store is opened once when the hub starts
(waiting while the database is unavailable), and every part is built on it with its
collaborators passed by keyword (nothing is wired in afterwards), the hub's one clock
among them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from secrets import token_bytes
from types import TracebackType
from typing import Any

from aiohttp import web

from cloud_hub.api import ApiKeys, ShareWatch, parse_where
from cloud_hub.ingest import HubMqtt, Pipeline, ReplayWindows, SegmentFeed, Verifier
from cloud_hub.models import (
    ModelPublisher,
    ModelRepo,
    RolloutStore,
    TagPublisher,
    load_catalog,
)
from cloud_hub.privacy import (
    ConsentChanges,
    EgressPolicy,
    Erasures,
    FieldBlocks,
    IngestPolicy,
    Objections,
    Rectifier,
    Relinks,
    RequestLedger,
    RetentionSweeper,
    Subjects,
    Tombstones,
    Webhooks,
    WebhookSender,
    ensure_ceiling,
)
from cloud_hub.registry import Registry, ensure_hub_key
from cloud_hub.store import InfluxStore, StateStore, TwinIndex, TwinReader, wait_for_state
from cloud_hub.triggers import Rules, TriggerEvents, TriggerSender, TriggerWatch, follow_privacy
from protocol import Clock, SystemClock, hub_box_key

from ._config import HubConfig
from ._errors import StoreError
from ._hub_api import assemble_api, start_api
from ._hub_privacy import build_privacy
from ._metrics import Metrics
from ._supervise import supervise

__all__ = ["Hub"]

log = logging.getLogger("cloud_hub")


class Hub:
    """One hub instance."""

    # Built by __aenter__ once the state store is open (:meth:`_build`).
    registry: Registry
    tombstones: Tombstones
    blocks: FieldBlocks
    index: TwinIndex
    reader: TwinReader
    feed: SegmentFeed
    api_keys: ApiKeys
    webhooks: Webhooks
    subjects: Subjects
    ledger: RequestLedger
    erasures: Erasures
    relinks: Relinks
    policy: IngestPolicy
    objections: Objections
    rectifier: Rectifier
    consent: ConsentChanges
    models: ModelRepo
    rollouts: RolloutStore
    retention: RetentionSweeper
    tags: TagPublisher
    #: the scheduled segment share check (docs/hub.md, "Segment intelligence")
    share_watch: ShareWatch

    def __init__(
        self,
        config: HubConfig,
        *,
        clock: Clock | None = None,
        state: StateStore | None = None,
        entropy: Callable[[int], bytes] | None = None,
    ) -> None:
        self.config = config
        #: n random bytes for the strategy lab's experiment ids and assignment salts
        #: (None: the system's; a seeded source makes a test's assignment replayable)
        self._entropy = entropy
        #: every wall-clock time the hub reads or stamps comes from this one clock
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        #: the shared state (cloud_hub.store): passed in (its owner closes it), or opened
        #: from ``config.state`` when the hub starts and closed when it stops
        self._state_given = state
        self._state_owned: StateStore | None = None
        self._key = ensure_hub_key(config.keys.secrets_dir)
        self._store = InfluxStore(config.influx)
        self.windows = ReplayWindows(config.limits.replay_window)
        #: set once the database (and its retention ceiling) is prepared and the first
        #: broker session began: the loops beside ingest start then
        self._session_started = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.api_port = 0
        #: set once the store is prepared and the broker confirmed the subscriptions
        self.ready = asyncio.Event()

    def _build(self, state: StateStore) -> None:
        """Every part that keeps shared state, on ``state``, with its collaborators."""
        config, clock, metrics, key = self.config, self.clock, self.metrics, self._key
        store = self._store
        self.registry = Registry(state=state, clock=clock)
        # What every instance re-reads from the state store: tombstones and field blocks.
        self.tombstones = Tombstones(state)
        self.blocks = FieldBlocks(state)
        # The twin query index: kept by ingest (when enabled) and every privacy procedure.
        self.index = TwinIndex(state=state)
        self.reader = TwinReader(store, devices=self.registry, hidden=self.blocks.hidden)
        # The hub's box key is derived from its signing key (docs/privacy.md, "Sealed
        # deltas"): whoever holds the one can open what devices seal to the other.
        self._verifier = Verifier(
            config.limits,
            registry=self.registry,
            clock=clock,
            windows=self.windows,
            box_keys=[hub_box_key(key)],
        )
        self.feed = SegmentFeed(
            previous=self.reader.segment_before, metrics=metrics, key=key, clock=clock
        )
        self._mqtt = HubMqtt(config.mqtt, metrics=metrics, clock=clock, on_event=self.feed.deliver)
        self.api_keys = ApiKeys(state=state, clock=clock)
        egress = EgressPolicy.for_hub(config, lambda: self.api_port)  # webhooks' targets
        self.webhooks = Webhooks(state=state, clock=clock, egress=egress)
        self._webhook_sender = WebhookSender(hooks=self.webhooks, metrics=metrics, clock=clock)
        self._triggers(state, egress)
        self._privacy(state)
        self.models = ModelRepo(state=state, models_dir=config.models.dir, clock=clock)
        self.rollouts = RolloutStore(
            state=state, repo=self.models, registry=self.registry, clock=clock
        )
        self._publisher = ModelPublisher(
            store=self.rollouts,
            mqtt=self._mqtt,
            key=key,
            clock=clock,
            metrics=metrics,
            base_url=lambda: config.models.public_url or self.api_url,
            interval_s=config.models.reconcile_s,
            brands=config.mqtt.brands,
        )
        tag_catalog = config.tags.catalog
        self.tags = TagPublisher(
            catalog=None if tag_catalog is None else load_catalog(tag_catalog, key),
            key=key,
            clock=clock,
            brands=lambda: [
                b
                for b in self.registry.brands()
                if not config.mqtt.brands or b in config.mqtt.brands
            ],
            publish=self._mqtt.publish,
        )
        self.share_watch = ShareWatch(
            config.segments,
            reader=self.reader,
            store=store,
            metrics=metrics,
            clock=clock,
            brands=config.mqtt.brands,
        )
        self.retention = RetentionSweeper(
            config.retention,
            state=state,
            store=store,
            index=self.index,
            clock=clock,
            metrics=metrics,
            brands=config.mqtt.brands,
        )

    def _triggers(self, state: StateStore, egress: EgressPolicy) -> None:
        """Trigger rules, their events (evaluated at ingest) and their delivery."""
        settings, clock = self.config.triggers, self.clock
        self.trigger_rules = Rules(state=state, clock=clock, egress=egress)
        self.trigger_events = TriggerEvents(
            state=state,
            max_events=settings.log_max_events,
            retention_ms=settings.log_retention_days * 86_400_000,
        )
        self._trigger_watch = TriggerWatch(
            parse_where=parse_where, clock=clock, metrics=self.metrics
        )
        self._trigger_sender = TriggerSender(
            events=self.trigger_events, egress=egress, metrics=self.metrics, clock=clock
        )

    def _notify(self, brand: str, event: str, data: dict[str, Any]) -> object:
        """A privacy event: to the brand's privacy webhook, and into the trigger tables
        (an objection or consent withdrawn stops the twin's triggers, an erasure removes
        its events)."""
        follow_privacy(self.trigger_events, self.clock, brand, event, data)
        return self.webhooks.emit(brand, event, data)

    def _privacy(self, state: StateStore) -> None:
        """The customer's rights: the ingest policy and the data-subject procedures."""
        parts = build_privacy(
            self.config,
            state=state,
            key=self._key,
            clock=self.clock,
            metrics=self.metrics,
            store=self._store,
            tombstones=self.tombstones,
            blocks=self.blocks,
            index=self.index,
            publish=self._mqtt.publish,
            notify=self._notify,
        )
        self.subjects, self.ledger, self.erasures = parts.subjects, parts.ledger, parts.erasures
        self.relinks, self.policy = parts.relinks, parts.policy
        self.objections, self.rectifier = parts.objections, parts.rectifier
        self.consent = parts.consent

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API."""
        scheme = "https" if self.config.api.tls_cert_file is not None else "http"
        return f"{scheme}://{self.config.api.host}:{self.api_port}"

    async def _checks(self) -> dict[str, bool]:
        return {
            "mqtt": self._mqtt.connected.is_set(),
            "influx": await self._store.ping(),
            # the shared views re-read from the state store within the last few seconds
            "state": self.tombstones.fresh,
        }

    async def _index_state(self) -> None:
        """Say at start-up what the twin query index lacks (docs/hub.md, "Twin query
        index"): a rebuild, or, when this instance does not keep it, that it goes stale."""
        if not self.config.index.enabled:
            await asyncio.to_thread(self.index.mark_complete, False)
            log.warning(
                "index.enabled is false: this instance does not keep the twin query index "
                "(filtered twin queries answer 503 index_disabled); after turning it on "
                "again, run 'twinsync hub index rebuild'"
            )
        elif not await asyncio.to_thread(self.index.complete):
            log.warning(
                "the twin query index does not hold the twins stored before it existed or "
                "while it was off: run 'twinsync hub index rebuild' (the hub keeps serving; "
                "queries miss those twins until then)"
            )

    async def _open_state(self) -> StateStore:
        """The state store: the one passed in, or ``config.state`` opened now, waiting
        (logged) while the database is unavailable; a wrong setting ends the start."""
        if self._state_given is not None:
            return self._state_given
        self._state_owned = await wait_for_state(self.config.state)
        return self._state_owned

    async def __aenter__(self) -> Hub:
        state = await self._open_state()
        try:
            self._build(state)
            await self._index_state()
            await self._store.__aenter__()
        except BaseException:
            self._close_state()
            raise
        try:
            app = assemble_api(
                self,
                state=state,
                key=self._key,
                ready=self._checks,
                publish=self._mqtt.publish,
                publisher=self._publisher,
                entropy=self._entropy or token_bytes,
            )
            self._runner, self.api_port = await start_api(
                app, self.config.api, metrics=self.metrics
            )
            self._tg = asyncio.TaskGroup()
            await self._tg.__aenter__()
            for name, run in self._loops():
                work = supervise(name, run, self.metrics)
                task = self._tg.create_task(work, name=f"cloud_hub.{name}")
                task.add_done_callback(self._task_done)
                self._tasks.append(task)
        except BaseException:
            await self._close_io()
            raise
        log.info("hub API on %s", self.api_url)
        if not self.config.models.public_url and self.config.api.host in ("0.0.0.0", "::", ""):
            log.warning(
                "models.public_url is not set and the API listens on all interfaces: devices "
                "will be told to download models from %s; set models.public_url",
                self.api_url,
            )
        return self

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "hub task %s crashed: %r",
                task.get_name(),
                task.exception(),
                exc_info=task.exception(),
            )

    async def _prepare_store(self) -> None:
        delay = 0.2
        while True:
            try:
                if self.config.influx.create_database:
                    await self._store.ensure_database()
                if self.config.retention.ceiling:
                    await ensure_ceiling(
                        self._store,
                        self.config.influx.retention_policy,
                        self.config.retention.ceiling,
                    )
                for brand, device, seq in await self.reader.last_seqs():
                    self.windows.seed(brand, device, seq)
                return
            except StoreError as exc:
                log.warning("InfluxDB not ready (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 5.0)

    def _loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """The background loops, each supervised on its own (cloud_hub._supervise)."""
        # the configured tag catalog to every brand's devices (none configured: no loop)
        tags = [("tags", self._after_start(self.tags.run))] if self.tags.catalog else []
        return [
            *tags,
            # tombstones, field blocks and twin links, re-read off the event loop
            ("views", self._follow_views),
            ("ingest", self._ingest),
            ("publisher", self._after_start(self._publisher.run)),
            ("feed", self._after_start(self.feed.run)),
            ("webhooks", self._after_start(self._webhook_sender.run)),
            ("triggers", self._after_start(self._trigger_sender.run)),
            ("relinks", self._after_start(self.relinks.run)),
            # finish the field removals a stopped instance left (cloud_hub.privacy._rectify)
            ("removals", self._after_start(self.rectifier.keep_resuming)),
            ("retention", self._after_start(self.retention.run)),
            ("share_watch", self._after_start(self.share_watch.run)),
        ]

    async def _follow_views(self) -> None:
        async with asyncio.TaskGroup() as views:
            for view in (self.tombstones, self.blocks, self.relinks):
                views.create_task(view.follow(), name=f"cloud_hub.views.{view.WHAT}")

    def _after_start(self, run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``run`` once the database is prepared and the broker session has begun (as it
        began before ingest was supervised; a restart of ingest does not restart it)."""

        async def started() -> None:
            await self._session_started.wait()
            await run()

        return started

    async def _ingest(self) -> None:
        """Prepare the database, then the MQTT session and the pipeline. A failure ends
        the session: what the pipeline held un-PUBACKed is redelivered when the
        supervisor starts the next one (persistent session)."""
        await self._prepare_store()
        async with self._mqtt:
            self._session_started.set()
            pipeline = Pipeline(
                self.config.influx,
                mqtt=self._mqtt,
                store=self._store,
                verifier=self._verifier,
                hub_key=self._key,
                metrics=self.metrics,
                clock=self.clock,
                policy=self.policy,
                index=self.index if self.config.index.enabled else None,
                observe=self._trigger_watch,
            )
            run = asyncio.ensure_future(pipeline.run())
            subscribed = asyncio.ensure_future(self._mqtt.connected.wait())
            try:
                # Ready means subscribed: from then on nothing published is missed.
                await asyncio.wait([run, subscribed], return_when=asyncio.FIRST_COMPLETED)
                if subscribed.done():
                    self.ready.set()
                await run  # runs until cancelled; its error goes to the supervisor
            finally:
                for pending in (run, subscribed):
                    pending.cancel()
                await asyncio.gather(run, subscribed, return_exceptions=True)

    async def wait(self) -> None:
        """Block until a background task fails for good (its exception is raised: only a
        configuration error does, see cloud_hub._supervise) or forever."""
        await asyncio.gather(*self._tasks)

    async def _close_io(self) -> None:
        self.feed.close()  # open streams end, so the runner's cleanup need not wait
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._store.__aexit__(None, None, None)
        self._close_state()

    def _close_state(self) -> None:
        if self._state_owned is not None:
            self._state_owned.close()
            self._state_owned = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            if self._tg is not None:
                await self._tg.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            log.error("hub task failed during shutdown: %r", group.exceptions)
        finally:
            self._tasks.clear()
            await self._close_io()
