"""The hub service: MQTT ingest pipeline + HTTP API, as one async context manager.

    async with Hub(load_hub_config("hub.toml")) as hub:
        print(hub.api_url)
        await hub.wait()          # until a fatal error; cancel to stop

It holds no state two instances could disagree on: twin state lives in InfluxDB, devices
in the shared registry, and the replay windows are a per-instance optimisation seeded
from InfluxDB (a write repeated by another instance is a no-op).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

from cloud_hub.api import (
    PROBE_LIFETIME_S,
    ApiKeys,
    ConnectionGate,
    GatedSite,
    PrivacyContext,
    RolloutContext,
    add_privacy_routes,
    add_rollout_routes,
    build_app,
    connection_cap,
    install,
)
from cloud_hub.ingest import HubMqtt, Pipeline, ReplayWindows, SegmentFeed, Verifier
from cloud_hub.models import ModelPublisher, ModelRepo, RolloutStore, url_signer
from cloud_hub.privacy import (
    EgressPolicy,
    Erasures,
    Objections,
    Rectifier,
    Relinks,
    RetentionSweeper,
    Webhooks,
    WebhookSender,
    ensure_ceiling,
)
from cloud_hub.registry import Registry, ensure_hub_key
from cloud_hub.store import InfluxStore, TwinReader
from protocol import Clock, SystemClock, hub_box_key

from ._config import HubConfig
from ._errors import ConfigError, StoreError
from ._metrics import Metrics
from ._supervise import supervise

__all__ = ["Hub"]

log = logging.getLogger("cloud_hub")


class Hub:
    """One hub instance."""

    def __init__(self, config: HubConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.registry = Registry(config.registry.path)
        self._key = ensure_hub_key(config.keys.secrets_dir)
        self._store = InfluxStore(config.influx)
        self.reader = TwinReader(self._store, self.registry)
        self.windows = ReplayWindows(config.limits.replay_window)
        # The hub's box key is derived from its signing key (docs/privacy.md, "Sealed
        # deltas"): whoever holds the one can open what devices seal to the other.
        self._verifier = Verifier(
            self.registry,
            config.limits,
            self.clock,
            self.windows,
            box_keys=[hub_box_key(self._key)],
        )
        self._mqtt = HubMqtt(config.mqtt, self.metrics, self.clock.now_ms)
        self.api_keys = ApiKeys(config.registry.path)
        egress = EgressPolicy.for_hub(config, lambda: self.api_port)  # webhooks' targets
        self.webhooks = Webhooks(config.registry.path, egress)
        self.erasures = Erasures(
            config.registry.path,
            config.keys.secrets_dir,
            self._store,
            self._key,
            publish=lambda topic, payload: self._mqtt.publish(topic, payload, qos=1),
            notify=self.webhooks.emit,
        )
        self.relinks = Relinks(
            config.registry.path,
            config.keys.secrets_dir,
            self._store,
            self.metrics,
            is_erased=lambda brand, twin: twin in self.erasures.erased(brand),
            notify=self.webhooks.emit,
            grace_s=config.keys.link_grace_s,
        )
        self.reader.hidden = self.erasures.blocks.hidden
        self.objections = Objections(self.erasures, self._store)
        self.rectifier = Rectifier(config.registry.path, self._store, self.erasures)
        self._webhook_sender = WebhookSender(self.webhooks, self.metrics)
        self.models = ModelRepo(config.registry.path, config.models.dir)
        self.rollouts = RolloutStore(config.registry.path, self.models, self.registry)
        self._publisher = ModelPublisher(
            self.rollouts,
            self._mqtt,
            self._key,
            self.clock,
            self.metrics,
            base_url=lambda: config.models.public_url or self.api_url,
            interval_s=config.models.reconcile_s,
            brands=config.mqtt.brands,
        )
        self.feed = SegmentFeed(
            self.reader.segment_before, self.metrics, self._key, self.clock.now_ms
        )
        self._mqtt.on_event = self.feed.deliver
        self.retention = RetentionSweeper(
            config.retention,
            self._store,
            config.registry.path,
            self.clock,
            self.metrics,
            config.mqtt.brands,
        )
        #: set once the database (and its retention ceiling) is prepared and the first
        #: broker session began: the loops beside ingest start then
        self._session_started = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.api_port = 0
        #: set once the store is prepared and the broker confirmed the subscriptions
        self.ready = asyncio.Event()

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API."""
        scheme = "https" if self.config.api.tls_cert_file is not None else "http"
        return f"{scheme}://{self.config.api.host}:{self.api_port}"

    async def _checks(self) -> dict[str, bool]:
        return {"mqtt": self._mqtt.connected.is_set(), "influx": await self._store.ping()}

    async def __aenter__(self) -> Hub:
        await self._store.__aenter__()
        try:
            app = build_app(
                self.reader,
                self.metrics,
                self._checks,
                self.feed,
                self.api_keys,
                url_signer(self._key),
            )
            add_privacy_routes(
                app,
                PrivacyContext(
                    self.erasures,
                    self.reader,
                    self.api_keys,
                    self.config.influx,
                    self.webhooks,
                    self.objections,
                    self.config.retention,
                    self.rectifier,
                ),
            )
            add_rollout_routes(
                app,
                RolloutContext(
                    self.models,
                    self.rollouts,
                    self._publisher,
                    self.reader,
                    {self._key.kid: self._key.public},
                ),
            )
            api = self.config.api
            gate = ConnectionGate(
                connection_cap(api),
                api.probe_connections,
                min(PROBE_LIFETIME_S, api.idle_timeout_s),
                self.metrics,
            )
            install(app, gate, api.body_timeout_s)
            # aiohttp's keep-alive timer starts when a connection opens and is re-armed
            # after each answer: it closes idle connections and slow request heads alike.
            self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=api.idle_timeout_s)
            await self._runner.setup()
            tls = None
            if api.tls_cert_file is not None and api.tls_key_file is not None:
                tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                try:
                    tls.load_cert_chain(api.tls_cert_file, api.tls_key_file)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(f"cannot load the API's TLS certificate: {exc}") from exc
            site = GatedSite(
                self._runner,
                api.host,
                api.port,
                gate,
                ssl_context=tls,
                handshake_timeout_s=api.idle_timeout_s,
            )
            await site.start()
            self.api_port = site.bound_port
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
        return [
            ("ingest", self._ingest),
            ("publisher", self._after_start(self._publisher.run)),
            ("feed", self._after_start(self.feed.run)),
            ("webhooks", self._after_start(self._webhook_sender.run)),
            ("relinks", self._after_start(self.relinks.run)),
            # finish the field removals a stopped instance left (cloud_hub.privacy._rectify)
            ("removals", self._after_start(self.rectifier.keep_resuming)),
            ("retention", self._after_start(self.retention.run)),
        ]

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
                self._mqtt,
                self._store,
                self._verifier,
                self._key,
                self.config.influx,
                self.metrics,
                self.clock,
                self.erasures,
                self.relinks,
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
