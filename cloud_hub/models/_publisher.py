"""Send each device the models its rollouts assign to it.

Every ``models.reconcile_s`` (and at once after a rollout or cohort change) the publisher
recomputes each device's desired set (:meth:`RolloutStore.desired`) and publishes the
sets that changed, hub-signed and **retained** on ``ts/v1/{brand}/{device}/model``: a
device that is offline gets its set when it reconnects, and a device provisioned later
gets it on the next pass. The set's version increases per device, so a device can ignore
a stale copy. The state store's work runs in a thread; publishing is paho's (QoS 1
survives a broker reconnect). Every instance runs this loop; the store's lock on a brand's
sets (cloud_hub.models._rollouts) lets one of them number and publish each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from cloud_hub._downlink import seal_downlink
from cloud_hub._metrics import Metrics
from protocol import (
    Channel,
    Clock,
    ModelOffer,
    ModelSet,
    SigningKey,
    TwinSyncError,
    packb,
    topic,
)

from ._rollouts import Rollout, RolloutStore
from ._signed_urls import model_url_signature, url_signer

__all__ = ["ModelPublisher"]

log = logging.getLogger("cloud_hub.rollout")


class Publish(Protocol):
    """What the publisher needs of the hub's MQTT client (cloud_hub.ingest.HubMqtt)."""

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...


class ModelPublisher:
    """Owns the reconcile loop; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        store: RolloutStore,
        mqtt: Publish,
        key: SigningKey,
        clock: Clock,
        metrics: Metrics,
        base_url: Callable[[], str],
        interval_s: float,
        brands: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._mqtt = mqtt
        self._key = key
        self._clock = clock
        self._metrics = metrics
        self._base_url = base_url
        self._interval_s = interval_s
        self._brands = tuple(brands)
        self._signer = url_signer(key)
        #: set it to publish now (after a rollout or cohort change)
        self.wake = asyncio.Event()
        # The first pass re-sends every set: a crash between recording a set and the
        # broker taking it must not leave a device without it.
        self._resend_all = True

    async def run(self) -> None:
        """Publish changed sets now and whenever woken or ``interval_s`` passed."""
        while True:
            self.wake.clear()
            try:
                messages = await asyncio.to_thread(self._due, self._resend_all)
                self._resend_all = False
            except (TwinSyncError, OSError) as exc:
                # StateStoreError (the state store down or busy) is a TwinSyncError too.
                log.warning("model rollout pass failed (%s); retrying", exc)
                self._metrics.inc("twinsync_hub_rollout_errors_total")
                messages = []
            except Exception:
                # A bug here must not stop ingest (this runs beside it); it is logged loudly.
                log.exception("model rollout pass crashed; retrying")
                self._metrics.inc("twinsync_hub_rollout_errors_total")
                messages = []
            for device_topic, payload in messages:
                self._mqtt.publish(device_topic, payload, qos=1, retain=True)
            if messages:
                self._metrics.inc("twinsync_hub_model_sets_published_total", len(messages))
                log.info("published %d model set(s)", len(messages))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self.wake.wait()

    def _url(self, base: str, brand: str, rollout: Rollout) -> str:
        m = rollout.model
        sig = model_url_signature(self._signer, brand, m.name, m.version, m.sha256)
        return (
            f"{base}/v1/brands/{brand}/models/{m.name}/{m.version}/model.onnx"
            f"?sha256={m.sha256}&sig={sig}"
        )

    def _due(self, everything: bool) -> list[tuple[str, bytes]]:
        base = self._base_url().rstrip("/")
        out: list[tuple[str, bytes]] = []
        for brand in self._store.brands():
            if self._brands and brand not in self._brands:
                continue
            self._store.reconcile(brand)
            sets = {
                device: tuple(
                    ModelOffer(
                        manifest=rollout.model.to_json(), url=self._url(base, brand, rollout)
                    )
                    for name, rollout in sorted(by_name.items())
                )
                for device, by_name in self._store.desired(brand).items()
            }
            digests = {device: _digest(offers) for device, offers in sets.items()}
            digests[""] = _digest(())
            versions = self._store.set_versions(brand, digests, everything=everything)
            for device, version in sorted(versions.items()):
                body = ModelSet(version=version, models=sets.get(device, ()))
                message = seal_downlink(
                    self._key,
                    "model",
                    brand,
                    device,
                    body,
                    seq=version,
                    sent_ms=self._clock.now_ms(),
                )
                out.append((topic(brand, device, Channel.MODEL), message))
        return out


def _digest(offers: tuple[ModelOffer, ...]) -> str:
    return hashlib.sha256(packb([offer.model_dump() for offer in offers])).hexdigest()
