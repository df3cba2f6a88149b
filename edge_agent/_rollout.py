"""rollout: install the models the hub assigns to this device.

The hub publishes a signed, retained :class:`protocol.ModelSet` on the device's ``model``
topic. For each offered model the updater runs the store's checks that need no file
(:meth:`ModelStore.admit`: signature, product, inputs, kind, no downgrade) before it
downloads a byte, then fetches the file over HTTP(S) (bounded by the manifest's size),
and installs it (:meth:`ModelStore.install`: hash, fresh session, smoke inference,
atomic swap). Every outcome reaches the device status at once: the hub's rollout
progress is what devices report.

A refused model is not tried again (the same version will be refused again); a failed
download is retried with capped backoff. Only the newest set counts: a set that arrives
while another is being applied replaces it, and stale sets (a lower version, e.g. a
replayed copy) are ignored: here within a run, and by the uplink across restarts (the
highest version seen is persisted, ``edge_agent._freshness``), so an old set put back on
the retained topic cannot roll a model back. The work is serial and runs in the agent's
TaskGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable

from protocol import ModelManifest, ModelSet, TwinSyncError

from ._errors import ModelError, ModelRejected
from ._models import ModelStore

__all__ = ["ModelUpdater"]

log = logging.getLogger("edge_agent.rollout")


class ModelUpdater:
    """Applies the newest :class:`ModelSet`; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        store: ModelStore,
        stats: dict[str, int],
        on_change: Callable[[], None],
        fetch_timeout_s: float = 60.0,
        retry_max_s: float = 300.0,
        ca_file: str = "",
    ) -> None:
        self._store = store
        self._stats = stats
        self._on_change = on_change
        self._timeout = fetch_timeout_s
        self._retry_max = retry_max_s
        self._ca_file = ca_file
        # Made on the first https download: loading the CA store costs ~1.5 MiB.
        self._tls: ssl.SSLContext | None = None
        self._latest: ModelSet | None = None
        self._version = 0
        self._refused: set[tuple[str, str]] = set()  # (ref, sha256) refused for good
        self._wake = asyncio.Event()
        for key in (
            "model_sets",
            "models_installed",
            "models_rolled_back",
            "models_refused",
            "model_fetch_errors",
        ):
            stats.setdefault(key, 0)

    def offer(self, model_set: ModelSet) -> None:
        """Hand over a verified set from the hub (called by the uplink; never blocks)."""
        if model_set.version <= self._version:
            return  # retained or replayed copy of a set we have (or had) already
        self._version = model_set.version
        self._latest = model_set
        self._stats["model_sets"] += 1
        self._wake.set()

    async def run(self) -> None:
        """Apply each newest set; retry failed downloads with capped backoff."""
        delay = 1.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            model_set = self._latest
            if model_set is None:
                continue
            if await self._apply(model_set):
                delay = 1.0
                continue
            # A download failed: try the (then newest) set again later.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.set()
            delay = min(delay * 2, self._retry_max)

    async def _apply(self, model_set: ModelSet) -> bool:
        """Install what the set names; False if a download must be retried."""
        complete = True
        for offer in model_set.models:
            if self._latest is not model_set:
                return True  # a newer set arrived: it decides now
            raw = offer.manifest.encode()
            try:
                manifest = ModelManifest.from_json(raw)
            except TwinSyncError as exc:
                log.warning("model set %d: unreadable manifest: %s", model_set.version, exc)
                self._stats["models_refused"] += 1
                continue
            if self._store.running().get(manifest.name) == manifest.ref:
                continue
            if (manifest.ref, manifest.sha256) in self._refused:
                continue
            if self._store.previous(manifest.name) == manifest.version:
                # The hub went back to the version before this one: no download needed.
                await self._rollback(manifest)
                continue
            try:
                self._store.admit(raw)
                data = await asyncio.to_thread(self._fetch, offer.url, manifest.size)
                await asyncio.to_thread(self._store.install, raw, data)
            except ModelRejected as exc:
                self._stats["models_refused"] += 1
                log.warning("model %s refused (%s)", manifest.ref, exc.reason)
                if exc.reason == "hash_mismatch":
                    # A truncated or corrupted download (or a swapped file that may be
                    # put right): fetch again later; the refusal stays in the status.
                    complete = False
                else:
                    self._refused.add((manifest.ref, manifest.sha256))
            except OSError as exc:
                complete = False
                self._stats["model_fetch_errors"] += 1
                self._store.note_failure(manifest, "fetch_failed", str(exc))
                log.warning("cannot fetch model %s from %s: %s", manifest.ref, offer.url, exc)
            else:
                self._stats["models_installed"] += 1
                log.info("model %s installed from the hub's rollout", manifest.ref)
            self._on_change()
        return complete

    async def _rollback(self, manifest: ModelManifest) -> None:
        try:
            await asyncio.to_thread(self._store.rollback, manifest.name)
        except ModelError as exc:
            self._stats["models_refused"] += 1
            self._refused.add((manifest.ref, manifest.sha256))
            log.warning("rollback to %s failed (%s)", manifest.ref, exc.reason)
        else:
            self._stats["models_rolled_back"] += 1
            log.info("model %s rolled back to by the hub's rollout", manifest.ref)
        self._on_change()

    def _fetch(self, url: str, size: int) -> bytes:
        """GET ``url``: at most ``size`` + 1 bytes, so an oversized answer is caught."""
        if url.startswith("https:") and self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_file or None)
        request = urllib.request.Request(url, headers={"Accept": "application/octet-stream"})  # noqa: S310 - the URL comes from a hub-signed set and is http(s) by schema
        with urllib.request.urlopen(request, timeout=self._timeout, context=self._tls) as resp:  # noqa: S310
            data: bytes = resp.read(size + 1)
        return data
