"""tags: the behaviour tag catalog this device evaluates, and newer ones the hub sends.

The package's :data:`protocol.DEFAULT_TAGS` serves until the hub sends a newer catalog
(a hub-signed envelope of kind ``tags`` on ``ts/v1/{brand}/broadcast/tags``). A catalog
is taken only if it fits :data:`protocol.MAX_CATALOG_BYTES`, parses, verifies with a hub
key this device trusts (the catalog's own signature, as a model manifest's) and is not
older than the one in use; it is kept with the downlink marks in the outbox's file, so a
replayed older catalog is refused even after a restart, and re-verified at start-up
with the current hub keys. Every refusal changes nothing, is counted
(``downlinks_refused`` and ``tag_catalogs_refused``) and logged with its reason.

:class:`edge_agent._infer.ModelRunner` evaluates the catalog on the same feature vector
the models score, each time it re-scores a customer; the consent gate then keeps a tag
only with ``personalization`` consent (docs/edge-agent.md, "Behaviour tags").
"""

from __future__ import annotations

import logging

from protocol import (
    DEFAULT_TAGS,
    SignatureError,
    TagCatalog,
    TagError,
    VerifyKey,
)

from ._freshness import DownlinkFreshness, count_refusal

__all__ = ["TagBook"]

log = logging.getLogger("edge_agent.tags")


class TagBook:
    """The catalog in use; :meth:`offer` takes a newer signed one."""

    def __init__(
        self,
        *,
        hub_keys: dict[str, VerifyKey],
        stats: dict[str, int],
        freshness: DownlinkFreshness | None = None,
    ) -> None:
        self._keys = dict(hub_keys)
        self._stats = stats
        self._freshness = freshness
        self.catalog: TagCatalog = DEFAULT_TAGS
        stored = None if freshness is None else freshness.body("tags")
        if stored is not None:
            try:
                self.catalog = self._check(stored)
            except (TagError, SignatureError) as exc:
                # Signed by a key this device no longer trusts, or damaged: the default
                # serves until the hub sends the catalog again.
                log.warning("stored tag catalog not used (%s): %s", exc.reason, exc)

    def offer(self, document: bytes) -> bool:
        """Take ``document`` (a signed catalog) if it is valid and not older; return
        whether it is in use now. A refusal is counted and logged; nothing changes."""
        try:
            catalog = self._check(document)
            if catalog == self.catalog:
                return True  # the retained copy again
            if catalog.version <= self.catalog.version:
                raise TagError(
                    f"{catalog.ref} is not newer than {self.catalog.ref} in use", reason="replay"
                )
        except (TagError, SignatureError) as exc:
            self._stats["tag_catalogs_refused"] = self._stats.get("tag_catalogs_refused", 0) + 1
            count_refusal(self._stats, "tag catalog", exc.reason, str(exc))
            return False
        if self._freshness is not None:
            self._freshness.set_version("tags", catalog.version, document)
        self.catalog = catalog
        log.info("tag catalog %s in use (%d tags)", catalog.ref, len(catalog.tags))
        return True

    def _check(self, document: bytes) -> TagCatalog:
        catalog = TagCatalog.from_json(document)
        catalog.verify(self._keys)
        return catalog
