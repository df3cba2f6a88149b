"""twin state and delta: turn accepted signals into ops (docs/architecture.md rules).

Pure in-memory state: the last value this device emitted per (twin, field), cumulative
counter totals, the HLC and the firmware seq. The outbox persists it in the same
transaction as the deltas it produced, so a restart resumes exactly here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from protocol import (
    FIELDS,
    HLC,
    TAG_FIELDS,
    ConsentEntry,
    HybridClock,
    Op,
    Scalar,
    SignalIn,
    TwinLink,
    TwinOps,
    pseudonymize,
)

from ._consent import ConsentGate
from ._infer import STATE_FIELD, ModelRunner
from ._validate import Invalid, validate

__all__ = ["LOCAL_ONLY", "IngestResult", "TwinBook", "erased_digest"]


#: fields the catalog keeps on the device (``shared=False``)
LOCAL_ONLY = frozenset(name for name, spec in FIELDS.items() if not spec.shared)
TAG_FIELDS_SET = frozenset(TAG_FIELDS.values())


def erased_digest(twin: str) -> str:
    """What the device keeps of an erased twin: enough to recognise it, not its id."""
    return hashlib.sha256(b"twinsync/erased/v1\x00" + twin.encode()).hexdigest()[:32]


class IngestResult(NamedTuple):
    """What the agent made of one signal (the ingest interface's reply)."""

    seq: int | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


@dataclass
class TwinBook:
    """The device's view of its twins plus the ops not yet sealed into a delta."""

    brand_key: bytes
    epoch: int
    fw_seq: int = -1
    clock: HybridClock = field(default_factory=HybridClock)
    values: dict[tuple[str, str], Scalar] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    pending: dict[str, list[Op]] = field(default_factory=dict)
    pending_ops: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    gate: ConsentGate = field(default_factory=ConsentGate)
    _twin_cache: dict[str, str] = field(default_factory=dict)
    #: runs the models on accepted signals (None: models off); given at construction,
    #: it resumes from the state the outbox restores (:meth:`restored`)
    models: ModelRunner | None = None
    #: fields kept on the device only (data minimisation): the catalog's unshared ones
    #: plus what the deployment adds (``minimise.keep_local``)
    local_only: frozenset[str] = field(default_factory=lambda: LOCAL_ONLY)
    #: consent entries recorded since the last delta was sealed (they ride in the next)
    consent_pending: list[ConsentEntry] = field(default_factory=list)
    #: digests (:func:`erased_digest`) of twins the hub erased: nothing is stored for
    #: them again, and not even their id is kept
    erased: set[str] = field(default_factory=set)
    #: (epoch, key) of earlier brand keys, held while a key rotation carries twins over
    previous: tuple[tuple[int, bytes], ...] = ()
    #: twins carried over to the new epoch since the last commit: the outbox renames
    #: their rows and the next delta tells the hub (same transaction)
    links_pending: list[TwinLink] = field(default_factory=list)

    def twin_of(self, subject: str) -> str:
        """The twin id of a raw subject (cached; the subject is not kept beyond that)."""
        return self._twin(subject)

    def is_erased(self, twin: str) -> bool:
        """Whether the hub erased ``twin``."""
        return bool(self.erased) and erased_digest(twin) in self.erased

    def _twin(self, subject: str) -> str:
        twin = self._twin_cache.get(subject)
        if twin is None:
            if len(self._twin_cache) > 10_000:  # bounded: a device has few users
                self._twin_cache.clear()
            twin = pseudonymize(self.brand_key, self.epoch, subject)
            if self.previous and not self._knows(twin):
                self._carry_over(subject, twin)
            self._twin_cache[subject] = twin
        return twin

    def knows(self, twin: str) -> bool:
        """Whether this device holds anything of ``twin`` (values, consent, scores)."""
        return self._knows(twin)

    def _knows(self, twin: str) -> bool:
        if self.models is not None and self.models.knows(twin):
            return True
        return self.gate.knows(twin) or any(k[0] == twin for k in self.values)

    def _carry_over(self, subject: str, twin: str) -> None:
        """Key rotation: a customer this device knows under an earlier epoch's id keeps
        its state (values, model state, consent) under the new id, and a link tells the
        hub to move the twin's history. An erased old twin is not carried over."""
        for epoch, key in self.previous:
            old = pseudonymize(key, epoch, subject)
            if self.is_erased(old) or not self._knows(old):
                continue
            for key_ in [k for k in self.values if k[0] == old]:
                self.values[(twin, key_[1])] = self.values.pop(key_)
                if key_ in self.dirty:
                    self.dirty.discard(key_)
                    self.dirty.add((twin, key_[1]))
            if old in self.pending:
                ops = self.pending.pop(old)
                self.pending.setdefault(twin, []).extend(ops)
            self.consent_pending = [
                e._replace(twin=twin) if e.twin == old else e for e in self.consent_pending
            ]
            self.gate.rename(old, twin)
            if self.models is not None:
                self.models.rename(old, twin)
            self._twin_cache = {s: t for s, t in self._twin_cache.items() if t != old}
            self.links_pending.append(TwinLink(old, twin))
            return

    def apply(
        self, signal: SignalIn, now_ms: int, max_age_ms: int, max_ahead_ms: int
    ) -> IngestResult:
        """Process one signal; ops go to :attr:`pending`."""
        if signal.seq <= self.fw_seq:
            return IngestResult(signal.seq, "duplicate")
        self.fw_seq = signal.seq
        try:
            spec, value = validate(signal, now_ms, max_age_ms, max_ahead_ms)
        except Invalid as bad:
            self.rejected[bad.reason] = self.rejected.get(bad.reason, 0) + 1
            return IngestResult(signal.seq, "rejected", bad.reason)
        twin = self._twin(signal.subject)
        if self.is_erased(twin):
            self.rejected["erased"] = self.rejected.get("erased", 0) + 1
            return IngestResult(signal.seq, "rejected", "erased")
        if not self.gate.allows(twin, spec.purpose):
            self.rejected["no_consent"] = self.rejected.get("no_consent", 0) + 1
            return IngestResult(signal.seq, "rejected", "no_consent")
        if spec.field in self.gate.suppressed(twin):
            self.rejected["suppressed"] = self.rejected.get("suppressed", 0) + 1
            return IngestResult(signal.seq, "rejected", "suppressed")
        # Every accepted signal advances the clock, whether or not it changes the twin
        # (docs/architecture.md; firmware_sim's ground truth relies on it).
        hlc = self.clock.stamp(signal.ts).pack()
        self._set(twin, spec.field, spec.kind == "counter", value, hlc)
        if self.models is not None:
            for field, derived in self.models.observe(twin, signal.name, signal.ts, value):
                spec_out = FIELDS[field]
                # Features and predictions have purposes of their own (analytics,
                # personalization): without consent they are not kept, even if computed.
                if not self.gate.allows_field(twin, field, spec_out.purpose):
                    continue
                if (
                    derived is False
                    and field in TAG_FIELDS_SET
                    and (twin, field) not in self.values
                ):
                    continue  # a tag never held is no news: only gains and losses travel
                counter = spec_out.merge == "counter"
                self._set(twin, field, counter, derived, self.clock.stamp(signal.ts).pack())
        return IngestResult(signal.seq, "accepted")

    def _set(self, twin: str, field: str, counter: bool, value: Scalar, hlc: int) -> None:
        """Apply one value to the twin; queue an op when it changes the device's view."""
        key = (twin, field)
        if counter:
            total = self.values.get(key, 0.0 if isinstance(value, float) else 0)
            new: Scalar = total + value  # type: ignore[operator]
        else:
            new = value
            if key in self.values and self.values[key] == new:
                return
        self.values[key] = new
        self.dirty.add(key)
        if field in self.local_only:
            return  # the device's own view and its models have it; it never leaves
        self.pending.setdefault(twin, []).append(Op(hlc, field, new))
        self.pending_ops += 1

    def forget(self, twins: set[str]) -> None:
        """Drop the twins' state and unsealed ops, and refuse their signals from now on."""
        for key in [k for k in self.values if k[0] in twins]:
            del self.values[key]
        self.dirty = {k for k in self.dirty if k[0] not in twins}
        for twin in twins:
            self.pending_ops -= len(self.pending.pop(twin, ()))
            if self.models is not None:
                self.models.forget(twin)
        self._twin_cache = {s: t for s, t in self._twin_cache.items() if t not in twins}
        self.erased |= {erased_digest(t) for t in twins}
        self.consent_pending = [e for e in self.consent_pending if e.twin not in twins]
        self.links_pending = [
            link for link in self.links_pending if link.old not in twins and link.new not in twins
        ]
        self.gate.forget(twins)

    def take_pending(self, max_ops: int) -> list[tuple[TwinOps, ...]]:
        """Drain pending ops into delta bodies of at most ``max_ops`` ops each."""
        deltas: list[tuple[TwinOps, ...]] = []
        current: list[TwinOps] = []
        room = max_ops
        for twin, twin_ops in self.pending.items():
            rest = twin_ops
            while rest:
                chunk, rest = rest[:room], rest[room:]
                current.append(TwinOps(twin, tuple(chunk)))
                room -= len(chunk)
                if room == 0:
                    deltas.append(tuple(current))
                    current, room = [], max_ops
        if current:
            deltas.append(tuple(current))
        self.pending.clear()
        self.pending_ops = 0
        return deltas

    def take_dirty(self) -> list[tuple[str, str, object]]:
        """State rows changed since the last commit (model state included)."""
        rows: list[tuple[str, str, object]] = [(t, f, self.values[(t, f)]) for t, f in self.dirty]
        self.dirty.clear()
        if self.models is not None:
            rows += [(twin, STATE_FIELD, state) for twin, state in self.models.take_state()]
        return rows

    def restored(self) -> None:
        """The outbox has filled ``values`` from disk: hand the model state among them to
        :attr:`models`, which resumes from it (without models it stays a plain row)."""
        if self.models is None:
            return
        self.models.restore(self.values)
        for key in [k for k in self.values if k[1] == STATE_FIELD]:
            del self.values[key]

    @property
    def hlc(self) -> HLC:
        """The clock's last reading."""
        return self.clock.last
