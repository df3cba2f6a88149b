"""Hub-signed commands to every device of a brand: consent changes and tombstones.

Published QoS 1 on ``ts/v1/{brand}/broadcast/{kind}`` to the devices' persistent
sessions, so a device that is offline gets them when it returns. Each is signed with the
hub's key and stamped with the hub's clock (``sent_ms``): devices compare hub times only
with hub times and never go back (docs/architecture.md, "Fresh downlinks").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloud_hub._downlink import seal_downlink
from protocol import (
    BROADCAST,
    Clock,
    ConsentCommand,
    MessageKind,
    SigningKey,
    Tombstones,
    broadcast_topic,
)

__all__ = ["DeviceCommands"]


class DeviceCommands:
    """Signs and broadcasts commands to a brand's devices through ``publish`` (the hub's
    MQTT client: ``publish(topic, payload)`` at QoS 1)."""

    def __init__(
        self, *, key: SigningKey, clock: Clock, publish: Callable[[str, bytes], None]
    ) -> None:
        self._key = key
        self._clock = clock
        self._publish = publish

    def broadcast(self, brand: str, kind: MessageKind, body: Any, now: int) -> None:
        """Publish a hub-signed ``kind`` message sent at ``now`` to every device of
        ``brand``."""
        message = seal_downlink(self._key, kind, brand, BROADCAST, body, sent_ms=now)
        self._publish(broadcast_topic(brand, kind), message)

    def consent(
        self,
        brand: str,
        twins: list[str],
        purposes: dict[str, bool],
        notice: str,
        request_id: str,
        now: int,
    ) -> None:
        """Publish a :class:`~protocol.ConsentCommand` for ``twins``: devices that know a
        twin record it in their ledger (actor ``hub``)."""
        body = ConsentCommand(
            twins=tuple(twins), purposes=purposes, notice=notice, request_id=request_id, ts_ms=now
        )
        self.broadcast(brand, "consent", body, now)

    def tombstones(self, brand: str, twins: list[str], request_id: str, erased_ms: int) -> None:
        """Publish a tombstone: devices drop the twins' state and unsent ops and store
        nothing for them again."""
        body = Tombstones(twins=tuple(twins), request_id=request_id, erased_ms=erased_ms)
        self.broadcast(brand, "tombstone", body, self._clock.now_ms())
