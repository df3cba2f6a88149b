"""Hub-to-device messages: one place that seals a body under the hub's key."""

from __future__ import annotations

from protocol import Envelope, MessageKind, SigningKey, SystemClock, packb, seal

__all__ = ["seal_downlink"]


def seal_downlink(
    key: SigningKey,
    kind: MessageKind,
    brand: str,
    device: str,
    body: object,
    *,
    seq: int = 0,
    sent_ms: int | None = None,
) -> bytes:
    """A signed envelope of ``kind`` from the hub to ``device`` (or ``broadcast``);
    ``body`` is a protocol body with ``to_wire()``. The hub always passes ``sent_ms``
    from its clock; tests that seal their own messages may leave it to the system clock."""
    envelope = Envelope(
        kind=kind,
        brand=brand,
        device=device,
        seq=seq,
        kid=key.kid,
        sent_ms=SystemClock().now_ms() if sent_ms is None else sent_ms,
        body=packb(body.to_wire()),  # type: ignore[attr-defined]
    )
    return seal(envelope, key)
