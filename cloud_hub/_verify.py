"""verify: everything a device message must pass before it may touch InfluxDB.

Order matters: cheap checks first (size, topic, envelope structure), then the registry and
the signature (so an attacker's payload never reaches the body decoder), then the body's
schema, timestamps and the replay window. The result is either :class:`Accepted` or
:class:`Rejected`, which says whether the device should be told (``ack_rejected``: only a
correctly signed message from a known device earns a reply).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import (
    HLC,
    Channel,
    Clock,
    Delta,
    Status,
    TwinSyncError,
    decode_body,
    open_envelope,
    parse_topic,
)

from ._config import LimitSettings
from ._mqtt import Incoming
from ._registry import Registry

__all__ = ["Accepted", "Rejected", "ReplayWindows", "Verifier"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified message: a Delta to write or a Status to record."""

    incoming: Incoming
    brand: str
    device: str
    seq: int
    sent_ms: int
    body: Delta | Status


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that must not be written, and why."""

    incoming: Incoming
    reason: str
    detail: str
    brand: str | None = None
    device: str | None = None
    seq: int | None = None
    #: Tell the device (ack as rejected) so it drops a message it would resend forever.
    ack_rejected: bool = False
    #: A replay of a seq already written: ack it again, write nothing.
    replay: bool = False


class ReplayWindows:
    """Per-device record of seqs already durably written.

    Keeps the highest seq and the seqs seen within ``size`` below it. A seq older than the
    window can only be a replay: a device never has more than ``inflight`` (<< size)
    unacked deltas, so anything that old was acked, i.e. written.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._high: dict[tuple[str, str], int] = {}
        self._seen: dict[tuple[str, str], set[int]] = {}

    def seed(self, brand: str, device: str, last_seq: int) -> None:
        """Start from a persisted high-water mark (seqs within the window stay writable)."""
        key = (brand, device)
        self._high[key] = max(self._high.get(key, 0), last_seq)
        self._seen.setdefault(key, set())

    def is_replay(self, brand: str, device: str, seq: int) -> bool:
        """Whether ``seq`` was already written (or is too old to be anything but a replay)."""
        key = (brand, device)
        high = self._high.get(key)
        if high is None:
            return False
        return seq <= high - self.size or seq in self._seen[key]

    def mark(self, brand: str, device: str, seq: int) -> None:
        """Record ``seq`` as durably written."""
        key = (brand, device)
        seen = self._seen.setdefault(key, set())
        seen.add(seq)
        high = max(self._high.get(key, seq), seq)
        self._high[key] = high
        if len(seen) > 2 * self.size:
            floor = high - self.size
            self._seen[key] = {s for s in seen if s > floor}

    def high(self, brand: str, device: str) -> int | None:
        """Highest seq written for the device, if any."""
        return self._high.get((brand, device))


class Verifier:
    """Stateless checks plus the replay windows; one per hub instance."""

    def __init__(
        self, registry: Registry, limits: LimitSettings, clock: Clock, windows: ReplayWindows
    ) -> None:
        self._registry = registry
        self._limits = limits
        self._clock = clock
        self.windows = windows

    def verify(self, incoming: Incoming) -> Accepted | Rejected:
        """Run every check on one MQTT message."""
        if len(incoming.payload) > self._limits.max_payload_bytes:
            return Rejected(
                incoming,
                "oversized",
                f"{len(incoming.payload)} bytes > limit {self._limits.max_payload_bytes}",
            )
        try:
            where = parse_topic(incoming.topic)
            signed = open_envelope(incoming.payload)
        except TwinSyncError as exc:
            return Rejected(incoming, exc.reason, str(exc))
        env = signed.envelope
        ident: dict[str, Any] = {"brand": env.brand, "device": env.device, "seq": env.seq}
        if (env.brand, env.device) != (where.brand, where.device):
            return Rejected(
                incoming,
                "topic_mismatch",
                f"envelope names {env.brand}/{env.device} but came on {incoming.topic}",
                **ident,
            )
        if env.kind != where.channel.value or where.channel not in (Channel.DELTA, Channel.STATUS):
            return Rejected(
                incoming, "wrong_kind", f"{env.kind!r} message on {where.channel} topic", **ident
            )
        record = self._registry.get(env.brand, env.device)
        if record is None:
            return Rejected(incoming, "unknown_device", "device is not provisioned", **ident)
        if record.revoked:
            return Rejected(incoming, "revoked", "device was revoked", **ident)
        try:
            signed.verify(record.key)
        except TwinSyncError as exc:
            return Rejected(incoming, exc.reason, str(exc), **ident)
        # From here on the sender is authentic: permanent errors are worth telling it.
        tell = env.kind == "delta"
        try:
            body = decode_body(env.kind, env.body)
        except TwinSyncError as exc:
            return Rejected(incoming, exc.reason, str(exc), ack_rejected=tell, **ident)
        if isinstance(body, Delta):
            now = self._clock.now_ms()
            lo, hi = now - self._limits.max_age_ms, now + self._limits.max_future_ms
            for twin_ops in body.twins:
                for op in twin_ops.ops:
                    ms = op.hlc >> 16
                    if not lo <= ms <= hi:
                        return Rejected(
                            incoming,
                            "timestamp",
                            f"op at {HLC.unpack(op.hlc).ms} ms outside [{lo}, {hi}]",
                            ack_rejected=True,
                            **ident,
                        )
            if self.windows.is_replay(env.brand, env.device, env.seq):
                return Rejected(incoming, "replay", "seq already written", replay=True, **ident)
        elif not isinstance(body, Status):
            return Rejected(incoming, "wrong_kind", f"unexpected {env.kind}", **ident)
        return Accepted(incoming, env.brand, env.device, env.seq, env.sent_ms, body)
