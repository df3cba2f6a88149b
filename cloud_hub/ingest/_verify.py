"""verify: everything a device message must pass before it may touch InfluxDB.

Order matters: cheap checks first (size, topic, envelope structure), then the registry and
the signature (so an attacker's payload never reaches the body decoder), then the seal (a
sealed body is opened with the hub's box key; an unsealed delta is refused where
``limits.require_sealed`` says so), then the body's schema, timestamps (of ops and of
consent entries alike) and the replay window. The result is either :class:`Accepted` or
:class:`Rejected`, which says whether the device should be told (``ack_rejected``: only an
authentic message from a known device earns a reply).

A sealed delta is authentic without its Ed25519 signature once the device's signature has
vouched for its device box key: the AEAD key is derived from X25519(device box key, hub
box key), so only the holder of that device box key (or of the hub key) can make a body
that opens, and the associated data binds it to the brand, device, topic, kind and seq.
So the signature is checked on the first sealed delta of each (device, signing key,
device box key) and then only when a body fails to open (to say why it is refused); a
re-provisioned device (new signing key) or a wiped outbox (new box key) starts over, and
a revoked device is refused before any of this. What the seal does not cover is the
header's ``sent_ms`` (used only for the clock-skew gauge). docs/privacy.md, "Sealed
deltas", says what this assumes.

Only the registry lookup touches the state store; when the store cannot answer it raises
(``StateUnavailableError``) instead of returning a verdict: a message is never refused as
from an unknown device because the database was down (see :meth:`Verifier.verify`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloud_hub._config import LimitSettings
from cloud_hub.registry import Registry
from protocol import (
    HLC,
    BodyOpener,
    BoxPrivateKey,
    Channel,
    Clock,
    Delta,
    Envelope,
    SealedBody,
    Status,
    TwinSyncError,
    decode_body,
    open_envelope,
    parse_topic,
)

from ._mqtt import Incoming

__all__ = ["Accepted", "Rejected", "ReplayWindows", "Verifier"]

#: (device box key, signing key) pairs a hub instance remembers as vouched for; beyond
#: this the oldest half is forgotten (and re-vouched by the next signed delta), the same
#: bound as the opener's key cache (protocol._seal)
VOUCHED_MAX = 100_000
# brand, device, signing key id, device box public key (raw)
_Vouch = tuple[str, str, str, bytes]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified message: a Delta to write or a Status to record."""

    incoming: Incoming
    brand: str
    device: str
    seq: int
    sent_ms: int
    body: Delta | Status
    #: the body's msgpack bytes, opened if it travelled sealed (the payload is ciphertext)
    body_bytes: bytes = b""


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
        self,
        limits: LimitSettings,
        *,
        registry: Registry,
        clock: Clock,
        windows: ReplayWindows,
        box_keys: Iterable[BoxPrivateKey] = (),
    ) -> None:
        self._registry = registry
        self._limits = limits
        self._clock = clock
        self.windows = windows
        self._box_keys: dict[str, BoxPrivateKey] = {}
        self._opener: BodyOpener | None = None
        #: device box keys a device's signature vouched for (a pure function of the
        #: messages seen: no two instances can disagree because of it; see the docstring)
        self._vouched: dict[_Vouch, None] = {}
        for key in box_keys:
            self.add_box_key(key)

    def add_box_key(self, key: BoxPrivateKey) -> None:
        """Accept bodies sealed to ``key`` too (a hub holds its current box key, and its
        previous one while devices move over)."""
        if key.kid not in self._box_keys:
            self._box_keys[key.kid] = key
            self._opener = BodyOpener(self._box_keys.values())

    def _vouch_of(self, env: Envelope, brand: str, device: str, kid: str) -> _Vouch | None:
        """What would vouch for a sealed delta: its device, the registry's current signing
        key (which the header must name) and the device box key its body names."""
        if env.kind != "delta" or not env.sealed or self._opener is None or env.kid != kid:
            return None
        try:
            return (brand, device, kid, SealedBody.parse(env.body).device_key.raw)
        except TwinSyncError:
            return None  # malformed: the full path refuses it (bad_seal) after the signature

    def _vouch(self, vouch: _Vouch) -> None:
        if len(self._vouched) >= VOUCHED_MAX:
            for old in list(self._vouched)[: VOUCHED_MAX // 2]:
                del self._vouched[old]
        self._vouched[vouch] = None

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
        # A registry that cannot answer (the state store down) raises StateUnavailableError
        # out of here on purpose: the batch ends unwritten and un-PUBACKed and ingest is
        # restarted (cloud_hub._supervise), so the broker redelivers it once the store is
        # back. Answering "unknown_device" would refuse a genuine device's delta.
        record = self._registry.get(env.brand, env.device)
        if record is None:
            return Rejected(incoming, "unknown_device", "device is not provisioned", **ident)
        if record.revoked:
            return Rejected(incoming, "revoked", "device was revoked", **ident)
        vouch = self._vouch_of(env, record.brand, record.device, record.key.kid)
        vouched = vouch is not None and vouch in self._vouched
        if not vouched:
            try:
                signed.verify(record.key)
            except TwinSyncError as exc:
                return Rejected(incoming, exc.reason, str(exc), **ident)
        # From here on the sender is authentic (or its sealed body will not open):
        # permanent errors are worth telling it.
        tell = env.kind == "delta"
        body_bytes = env.body
        if env.sealed:
            # Seal failures are not acked as rejected: a missing or rotated hub box key is
            # the hub's to fix, and the device must keep the delta until then.
            if self._opener is None:
                return Rejected(
                    incoming,
                    "no_box_key",
                    "body is sealed but this hub holds no box key to open it",
                    **ident,
                )
            try:
                body_bytes = self._opener.open(env)
            except TwinSyncError as exc:
                if vouched:
                    # Refused either way; the signature tells a forgery from a device's
                    # own bad seal, so the reason is the one the full check gives.
                    try:
                        signed.verify(record.key)
                    except TwinSyncError as forged:
                        return Rejected(incoming, forged.reason, str(forged), **ident)
                return Rejected(incoming, exc.reason, str(exc), **ident)
            if vouch is not None and not vouched:
                self._vouch(vouch)
        elif tell and self._limits.requires_sealed(env.brand):
            # Not acked either: once the device seals, it resends these from its outbox.
            return Rejected(
                incoming,
                "unsealed",
                f"brand {env.brand} requires sealed deltas (limits.require_sealed); set "
                "[security] seal_deltas = true on the device, with hub-box.pub in its bundle",
                **ident,
            )
        try:
            body = decode_body(env.kind, body_bytes)
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
            # Consent entries are points too (measurement "consent"): the same window, or
            # a time InfluxDB cannot store would be dropped after the delta was acked.
            # The whole delta is refused, so nothing of it is half-written.
            for entry in body.consent:
                if not lo <= entry.ts_ms <= hi:
                    return Rejected(
                        incoming,
                        "consent_timestamp",
                        f"consent entry at {entry.ts_ms} ms outside [{lo}, {hi}]: the device's "
                        "clock is off (set it right; its own ledger keeps the entry)",
                        ack_rejected=True,
                        **ident,
                    )
            if self.windows.is_replay(env.brand, env.device, env.seq):
                return Rejected(incoming, "replay", "seq already written", replay=True, **ident)
        elif not isinstance(body, Status):
            return Rejected(incoming, "wrong_kind", f"unexpected {env.kind}", **ident)
        return Accepted(incoming, env.brand, env.device, env.seq, env.sent_ms, body, body_bytes)
