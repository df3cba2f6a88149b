"""Behaviour tag catalogs: the one the operator configures, signed and sent to devices.

``[tags] catalog`` names a catalog document (:class:`protocol.TagCatalog`, version 2 or
more: version 1 is the default every agent ships). At start-up the hub checks it (rules
over known features, the wire's tag names, size) and signs it with the hub key, exactly
as it signs model manifests; :meth:`TagPublisher.run` then publishes it, hub-signed and
retained, on ``ts/v1/{brand}/broadcast/tags`` of every brand with devices (again for a
brand that appears later), so a device that connects afterwards gets it too. Devices
refuse a catalog that is forged, older than theirs or too large, and count it
(docs/edge-agent.md, "Behaviour tags").

:attr:`TagPublisher.catalogs` is every catalog whose rules the hub can quote (the
default and the configured one, by ``tags@<version>``): the access export names the rule
that set each tag from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from cloud_hub._downlink import seal_downlink
from cloud_hub._errors import ConfigError
from protocol import (
    BROADCAST,
    DEFAULT_TAGS,
    Clock,
    SigningKey,
    TagCatalog,
    TagError,
    TagsOffer,
    broadcast_topic,
)

__all__ = ["TagPublisher", "load_catalog"]

log = logging.getLogger("cloud_hub.tags")


def load_catalog(path: Path, key: SigningKey) -> TagCatalog:
    """The catalog file at ``path``, checked and signed with ``key`` (ConfigError naming
    the setting and what to change when it cannot be used).

    Signed as it is (Ed25519 signatures are deterministic): every hub instance reading
    the same file publishes the same bytes, which devices take as one catalog. A stamp
    of each instance's start time would make two documents of one version, and devices
    would refuse the second."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tags.catalog: cannot read {path}: {exc}") from exc
    try:
        catalog = TagCatalog.from_json(data)
    except TagError as exc:
        raise ConfigError(f"tags.catalog {path}: {exc}") from exc
    if catalog.version <= DEFAULT_TAGS.version:
        raise ConfigError(
            f"tags.catalog {path}: version {catalog.version} is not newer than the default "
            f"catalog every agent ships ({DEFAULT_TAGS.ref}); give it version "
            f"{DEFAULT_TAGS.version + 1} or more"
        )
    return TagCatalog(catalog.version, catalog.tags, catalog.created_ms).sign(key)


class TagPublisher:
    """Publishes the configured catalog to every brand's devices (nothing without one)."""

    def __init__(
        self,
        *,
        catalog: TagCatalog | None,
        key: SigningKey,
        clock: Clock,
        brands: Callable[[], list[str]],
        publish: Callable[..., None],
        every_s: float = 30.0,
    ) -> None:
        self.catalog = catalog
        self._key = key
        self._clock = clock
        self._brands = brands
        self._publish = publish
        self._every_s = every_s
        self._sent: set[str] = set()
        #: every catalog whose rules the hub can quote, by ref
        self.catalogs: dict[str, TagCatalog] = {DEFAULT_TAGS.ref: DEFAULT_TAGS}
        if catalog is not None:
            self.catalogs[catalog.ref] = catalog

    def publish(self, brand: str) -> None:
        """Publish the catalog to ``brand``'s devices (retained)."""
        if self.catalog is None:
            return
        body = TagsOffer(catalog=self.catalog.to_json())
        message = seal_downlink(
            self._key, "tags", brand, BROADCAST, body, sent_ms=self._clock.now_ms()
        )
        self._publish(broadcast_topic(brand, "tags"), message, qos=1, retain=True)
        self._sent.add(brand)
        log.info("tag catalog %s published to brand %s", self.catalog.ref, brand)

    async def run(self) -> None:
        """Publish to every brand with devices, and to each new one as it appears (the
        hub runs it only with a catalog configured)."""
        while True:
            for brand in await asyncio.to_thread(self._brands):
                if brand not in self._sent:
                    self.publish(brand)
            await asyncio.sleep(self._every_s)
