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
from types import TracebackType
from typing import Any

from aiohttp import web

from protocol import Clock, SystemClock, hub_box_key

from ._api import build_app
from ._auth import ApiKeys
from ._config import HubConfig
from ._erasure import Erasures
from ._errors import ConfigError, StoreError
from ._events import SegmentFeed
from ._guard import url_signer
from ._influx import InfluxStore
from ._metrics import Metrics
from ._model_repo import ModelRepo
from ._mqtt import HubMqtt
from ._objection import Objections
from ._pipeline import Pipeline
from ._privacy_api import PrivacyContext, add_privacy_routes
from ._provision import ensure_hub_key
from ._publisher import ModelPublisher
from ._rectify import Rectifier
from ._registry import Registry
from ._rekey import Relinks
from ._retention import RetentionSweeper, ensure_ceiling
from ._rollout_api import RolloutContext, add_rollout_routes
from ._rollouts import RolloutStore
from ._twins import TwinReader
from ._verify import ReplayWindows, Verifier
from ._webhooks import Webhooks, WebhookSender

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
        self.webhooks = Webhooks(config.registry.path)
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
        self.feed = SegmentFeed(self.reader.segment_before, self.metrics)
        self._mqtt.on_event = self.feed.deliver
        self.retention = RetentionSweeper(
            config.retention,
            self._store,
            config.registry.path,
            self.clock,
            self.metrics,
            config.mqtt.brands,
        )
        #: set once the database (and its retention ceiling) is prepared
        self._store_ready = asyncio.Event()
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
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            api = self.config.api
            tls = None
            if api.tls_cert_file is not None and api.tls_key_file is not None:
                tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                try:
                    tls.load_cert_chain(api.tls_cert_file, api.tls_key_file)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(f"cannot load the API's TLS certificate: {exc}") from exc
            site = web.TCPSite(self._runner, api.host, api.port, ssl_context=tls)
            await site.start()
            server = site._server  # aiohttp exposes the bound port only here
            sockets = getattr(server, "sockets", None) or []
            self.api_port = sockets[0].getsockname()[1] if sockets else self.config.api.port
            self._tg = asyncio.TaskGroup()
            await self._tg.__aenter__()
            for work, name in ((self._ingest(), "ingest"), (self._maintain(), "maintenance")):
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
                self._store_ready.set()
                return
            except StoreError as exc:
                log.warning("InfluxDB not ready (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 5.0)

    async def _ingest(self) -> None:
        await self._prepare_store()
        async with self._mqtt:
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
            relink = asyncio.ensure_future(self.relinks.run())
            subscribed = asyncio.ensure_future(self._mqtt.connected.wait())
            publish = asyncio.ensure_future(self._publisher.run())
            feed = asyncio.ensure_future(self.feed.run())
            hooks = asyncio.ensure_future(self._webhook_sender.run())
            try:
                # Ready means subscribed: from then on nothing published is missed.
                await asyncio.wait([run, subscribed], return_when=asyncio.FIRST_COMPLETED)
                if subscribed.done():
                    self.ready.set()
                # Either loop ending is fatal for this instance (both run until cancelled).
                done, _ = await asyncio.wait(
                    [run, publish, feed, hooks, relink], return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()
            finally:
                tasks: list[asyncio.Future[Any]] = [run, subscribed, publish, feed, hooks, relink]
                for pending in tasks:
                    pending.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _maintain(self) -> None:
        """Once the database is prepared: finish the field removals a stopped instance
        left (cloud_hub._rectify) and run the retention sweeps (cloud_hub._retention)."""
        await self._store_ready.wait()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.rectifier.keep_resuming(), name="cloud_hub.removals")
            tg.create_task(self.retention.run(), name="cloud_hub.retention")

    async def wait(self) -> None:
        """Block until a background task fails (its exception is raised) or forever."""
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
