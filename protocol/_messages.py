"""Message bodies: what travels inside an envelope, and what firmware hands the agent.

Each body has ``to_wire()`` (a msgpack-ready object, compact arrays for the hot path) and
``from_wire(obj)`` which returns a whole, validated message or raises SchemaError: never a
half-decoded one. ``decode_body(kind, data)`` is the one entry point from bytes.

Delta wire form::

    {"t": [[twin_id, [[hlc, field, value], ...]], ...]}

one entry per twin, each op a packed HLC (see ``protocol._hlc``), a catalog field and a
scalar. For ``lww`` fields the value is the register's new value; for ``counter`` fields it
is the sending device's new cumulative total (never an increment), so a replayed or
reordered op can never double count.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from ._catalog import FIELDS, Scalar
from ._codec import DEFAULT_LIMITS, Limits, unpackb
from ._consent import (
    CONSENT_TIME_LIMIT_MS,
    OPTIONAL_PURPOSES,
    ConsentEntry,
    check_purposes,
    consent_from_wire,
)
from ._errors import IdentifierError, SchemaError
from ._hlc import HLC
from ._ids import check_twin
from ._pseudonym import TwinLink, links_from_wire
from ._tags import MAX_CATALOG_BYTES  # also registers the tag fields before _KINDS

__all__ = [
    "MAX_OPS_PER_DELTA",
    "MAX_TWINS_PER_DELTA",
    "Ack",
    "ConsentCommand",
    "Delta",
    "Desired",
    "ModelOffer",
    "ModelSet",
    "OfferExposure",
    "Op",
    "Rejection",
    "SignalIn",
    "Status",
    "TagsOffer",
    "Tombstones",
    "TwinOps",
    "decode_body",
]

MAX_TWINS_PER_DELTA = 256
MAX_OPS_PER_DELTA = 4096


class Op(NamedTuple):
    """One twin field change: packed HLC, field name, value."""

    hlc: int
    field: str
    value: Scalar


# NamedTuple's generated __new__ costs a Python call per op; the tuple's own does not.
_new_op = tuple.__new__


class TwinOps(NamedTuple):
    """The ops of one twin within a delta."""

    twin: str
    ops: tuple[Op, ...]


# field -> (type, is_counter), looked up once per op on the hub's hot path.
_KINDS = {name: (spec.type, spec.merge == "counter") for name, spec in FIELDS.items()}
_INT64 = 1 << 63
_MAX_PACKED_HLC = _INT64 - 1  # HLC ms is 47 bits, so a packed HLC is a positive int64


def _normalise(field: str, value: object) -> Scalar:
    # Exact type checks: msgpack yields exact builtins, and bool is not an int here.
    kind = _KINDS.get(field)
    if kind is None:
        raise SchemaError(f"unknown twin field {field!r}", reason="unknown_field")
    expected, counter = kind
    vt = type(value)
    if expected == "float":
        if vt is float:
            ok = math.isfinite(value)  # type: ignore[arg-type]
        elif vt is int:
            ok = -_INT64 <= value < _INT64  # type: ignore[operator]
            value = float(value)  # type: ignore[arg-type]
        else:
            ok = False
    elif expected == "int":
        ok = vt is int and -_INT64 <= value < _INT64  # type: ignore[operator]
    elif expected == "bool":
        ok = vt is bool
    else:
        ok = vt is str and len(value) <= 64  # type: ignore[arg-type]
    if not ok:
        raise SchemaError(f"field {field!r} expects {expected}, got {value!r}", reason="wrong_type")
    if counter and value < 0:  # type: ignore[operator]
        raise SchemaError(f"counter {field!r} cannot be negative", reason="wrong_type")
    return value  # type: ignore[return-value]


class Delta(BaseModel):
    """Twin ops from one device, sealed in one envelope with one ``seq``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    twins: tuple[TwinOps, ...]
    #: consent ledger entries recorded on the device since the last delta
    consent: tuple[ConsentEntry, ...] = ()
    #: twins that continue under a new key epoch (key rotation), old -> new
    links: tuple[TwinLink, ...] = ()

    def to_wire(self) -> dict[str, object]:
        """The compact msgpack-ready form (``"c"``/``"l"`` only when there are consent
        entries/twin links)."""
        wire: dict[str, object] = {"t": [[t.twin, [list(op) for op in t.ops]] for t in self.twins]}
        if self.consent:
            wire["c"] = [entry.to_wire() for entry in self.consent]
        if self.links:
            wire["l"] = [link.to_wire() for link in self.links]
        return wire

    @property
    def op_count(self) -> int:
        """Number of ops across all twins."""
        return sum(len(t.ops) for t in self.twins)

    @classmethod
    def from_wire(cls, obj: object) -> Delta:
        """Validate the wire form; every op's field, type and HLC are checked."""
        if (
            not isinstance(obj, dict)
            or "t" not in obj
            or not set(obj) <= {"t", "c", "l"}
            or not isinstance(obj["t"], list)
        ):
            raise SchemaError("delta must be a map with the key 't' (and optionally 'c', 'l')")
        consent = consent_from_wire(obj["c"]) if "c" in obj else ()
        links = links_from_wire(obj["l"]) if "l" in obj else ()
        entries = obj["t"]
        if len(entries) > MAX_TWINS_PER_DELTA or not (entries or consent or links):
            raise SchemaError(
                f"delta must name 1..{MAX_TWINS_PER_DELTA} twins or carry consent or links"
            )
        twins: list[TwinOps] = []
        seen: set[str] = set()
        total = 0
        for entry in entries:
            if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
                raise SchemaError("each delta entry must be [twin_id, [ops]]")
            try:
                twin = check_twin(entry[0])
            except IdentifierError as exc:
                raise SchemaError(str(exc), reason="bad_twin") from exc
            if twin in seen:
                raise SchemaError(f"twin {twin} appears twice in one delta")
            seen.add(twin)
            raw_ops = entry[1]
            total += len(raw_ops)
            if not raw_ops or total > MAX_OPS_PER_DELTA:
                raise SchemaError(f"a delta carries 1..{MAX_OPS_PER_DELTA} ops per twin list")
            ops: list[Op] = []
            for raw in raw_ops:
                if type(raw) is not list or len(raw) != 3:
                    raise SchemaError("each op must be [hlc, field, value]")
                hlc, field, value = raw
                if type(hlc) is not int or hlc < 0:
                    raise SchemaError(f"op hlc must be a non-negative integer, got {hlc!r}")
                if hlc > _MAX_PACKED_HLC:
                    HLC.unpack(hlc)  # raises the ClockError that explains the range
                if type(field) is not str:
                    raise SchemaError("op field must be a string")
                ops.append(_new_op(Op, (hlc, field, _normalise(field, value))))
            twins.append(TwinOps(twin, tuple(ops)))
        return cls.model_construct(twins=tuple(twins), consent=consent, links=links)


# Scalars are strict (msgpack gives exact types; no "1" -> 1 coercion), while containers
# accept msgpack's lists for the declared tuples.
_Int = Annotated[int, Strict()]
_Bool = Annotated[bool, Strict()]
_Str = Annotated[str, Strict()]
_Scalar = Annotated[bool, Strict()] | Annotated[int, Strict()] | Annotated[float, Strict()] | _Str


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_wire(self) -> dict[str, object]:
        """The msgpack-ready form (a map of the model's fields)."""
        return self.model_dump(mode="python")

    @classmethod
    def from_wire(cls, obj: object) -> _Body:
        """Validate the wire form; raise SchemaError on any mismatch."""
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise SchemaError(f"{cls.__name__.lower()}: {where}: {first['msg']}") from None


class Rejection(BaseModel):
    """A seq the hub will never accept, with why; the device drops it from its outbox."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: _Int = Field(ge=0)
    reason: _Str = Field(max_length=64)


class Ack(_Body):
    """Hub -> device: these seqs are durably written (or permanently rejected).

    A fact that stays true: a device never reuses a seq, so an ack replayed later
    names only deltas already gone from its outbox and deletes nothing else.
    """

    seqs: tuple[_Int, ...] = Field(default=(), max_length=4096)
    rejected: tuple[Rejection, ...] = Field(default=(), max_length=4096)
    hub_ms: _Int = Field(ge=0)


class Status(_Body):
    """Device -> hub, retained: liveness and outbox health (also the last will)."""

    online: _Bool
    product: _Str = Field(max_length=32)
    agent_version: _Str = Field(max_length=32)
    outbox_depth: _Int = Field(ge=0, default=0)
    outbox_bytes: _Int = Field(ge=0, default=0)
    dropped: _Int = Field(ge=0, default=0)
    rejected_signals: _Int = Field(ge=0, default=0)
    last_seq: _Int = Field(ge=0, default=0)
    #: models serving on the device (``name@version``), and the last refusal per model
    #: name (``"<reason> <name@version>"``): what a rollout reports back
    models: tuple[_Str, ...] = Field(default=(), max_length=32)
    model_failures: dict[_Str, _Str] = Field(default_factory=dict, max_length=32)


class Desired(_Body):
    """Hub -> device: desired settings with a monotonically increasing version (a device
    refuses a version lower than the highest it has seen, across restarts)."""

    version: _Int = Field(ge=0)
    settings: dict[_Str, _Scalar] = Field(default_factory=dict, max_length=64)


_MANIFEST_MAX = 16 * 1024
# Twice a catalog's own limit: the device refuses (and counts) a catalog over
# MAX_CATALOG_BYTES itself, with the reason; beyond this the body does not decode.
_TAGS_WIRE_MAX = 2 * MAX_CATALOG_BYTES


class ModelOffer(BaseModel):
    """One model a device should run: its hub-signed manifest and where to fetch the file.

    The manifest travels whole so the device can check it (signature, product, inputs,
    no downgrade) before it downloads a byte; the file's SHA-256 in the manifest is what
    makes the download trustworthy, not the server it comes from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest: _Str = Field(min_length=2, max_length=_MANIFEST_MAX)
    url: _Str = Field(min_length=8, max_length=2048, pattern=r"^https?://")


class ModelSet(_Body):
    """Hub -> device, retained: every model the hub's rollouts assign to this device.

    ``version`` increases with every change of the set for this device; a device refuses
    a set older than the newest it has seen (persisted, so a replayed old set cannot roll
    models back after a restart either). Kinds the set does not name keep what the device
    serves (an installed model or the package default).
    """

    version: _Int = Field(ge=1)
    models: tuple[ModelOffer, ...] = Field(default=(), max_length=16)


def _check_twins(value: tuple[str, ...]) -> tuple[str, ...]:
    for twin in value:
        check_twin(twin)
    return value


# 1..64 valid twin ids (what one broadcast may name)
_TwinIds = Annotated[
    tuple[_Str, ...], Field(min_length=1, max_length=64), AfterValidator(_check_twins)
]


class Tombstones(_Body):
    """Hub -> every device of a brand (broadcast): these twins were erased. A device drops
    everything it holds about them (state, unsent ops) and stores nothing for them again.

    Never refused as old: erasure only ever grows (the hub drops an erased twin's data
    for good), so a replay erases what is erased already, and a late one must still
    erase."""

    twins: _TwinIds
    request_id: _Str = Field(min_length=1, max_length=64)
    erased_ms: _Int = Field(ge=0)


class ConsentCommand(_Body):
    """Hub -> every device of a brand (broadcast): the brand backend changed these twins'
    consent (the customer told the brand, not the device).

    ``(ts_ms, request_id)`` orders commands: a device applies a command to a target
    (a twin's purpose, or a twin's field for ``suppress``/``restore``) only when it is
    newer than the last command it applied to that target, so a captured command
    replayed later changes nothing (docs/privacy.md, "Fresh commands").
    """

    twins: _TwinIds
    #: may be empty only when the command suppresses fields
    purposes: dict[str, bool] = Field(max_length=len(OPTIONAL_PURPOSES))
    notice: str = Field(min_length=1, max_length=32)
    request_id: str = Field(min_length=1, max_length=64)
    #: the hub's time of the change (Unix ms); devices record it in their consent ledger
    ts_ms: int = Field(ge=0, lt=CONSENT_TIME_LIMIT_MS)
    #: twin fields the customer suppressed ("edit my twin"): devices stop collecting and
    #: sending them for these twins. Left off the wire when empty, so a plain consent
    #: change reads the same to agents that predate it.
    suppress: tuple[str, ...] = Field(default=(), max_length=64)
    #: suppressions the customer lifted: devices collect these fields again (likewise
    #: left off the wire when empty)
    restore: tuple[str, ...] = Field(default=(), max_length=64)

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: dict[str, bool]) -> dict[str, bool]:
        if value:
            check_purposes(value)
        return value

    @field_validator("suppress", "restore")
    @classmethod
    def _fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in FIELDS:
                raise ValueError(f"unknown twin field {name!r}")
        return value

    @model_validator(mode="after")
    def _says_something(self) -> ConsentCommand:
        if not self.purposes and not self.suppress and not self.restore:
            raise ValueError("a consent command changes purposes or suppresses fields")
        if set(self.suppress) & set(self.restore):
            raise ValueError("a field cannot be suppressed and restored at once")
        return self

    def to_wire(self) -> dict[str, object]:
        """The msgpack-ready form (``suppress``/``restore`` only when not empty)."""
        wire = super().to_wire()
        for key in ("suppress", "restore"):
            if not wire[key]:
                del wire[key]
        return wire


class OfferExposure(_Body):
    """Hub -> one device: show ``offer`` of ``experiment`` to these twins (the treated
    twins of a strategy-lab experiment the device holds; docs/hub.md, "Strategy lab").

    ``ts_ms`` is the hub's time of the exposure; a device shows an experiment's offer to
    a twin at most once, and only newer than what it has applied, so a captured exposure
    replayed later shows nothing (docs/privacy.md, "Fresh commands").
    """

    experiment: str = Field(pattern=r"^exp-[0-9a-f]{12}$")
    offer: str = Field(min_length=1, max_length=64)
    twins: _TwinIds
    ts_ms: int = Field(ge=0, lt=CONSENT_TIME_LIMIT_MS)


class SignalIn(BaseModel):
    """One signal from firmware to the local agent (the ingest interface's schema).

    ``seq`` is the firmware's own per-device counter, so a signal re-sent after a lost
    reply is recognised and not applied twice. ``ts`` is the device clock in Unix ms.
    ``subject`` is the raw customer identifier: it never leaves the agent.
    NaN and infinities travel as the JSON constants ``NaN``/``Infinity`` so that the agent,
    not the JSON layer, rejects them (with reason ``not_finite``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    seq: _Int = Field(ge=0)
    ts: _Int
    subject: _Str = Field(min_length=1, max_length=256)
    name: _Str = Field(min_length=1, max_length=64)
    value: _Scalar


class TagsOffer(_Body):
    """Hub -> every device of a brand (broadcast, retained): a behaviour tag catalog.

    ``catalog`` is the :class:`protocol.TagCatalog` document, signed on its own by the
    hub as model manifests are; the device checks its size, signature and version
    (never older than the one in use) before it evaluates it (docs/edge-agent.md,
    "Behaviour tags")."""

    catalog: str = Field(min_length=2, max_length=_TAGS_WIRE_MAX)


_BODIES: dict[str, type[_Body]] = {
    "ack": Ack,
    "status": Status,
    "desired": Desired,
    "model": ModelSet,
    "tombstone": Tombstones,
    "consent": ConsentCommand,
    "tags": TagsOffer,
    "offer": OfferExposure,
}


def decode_body(kind: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Delta | _Body:
    """Decode and validate the body of an envelope of ``kind``."""
    if kind == "model":
        # Manifests are the one long string on the wire (hub-signed, still bounded).
        limits = replace(limits, max_str=max(limits.max_str, _MANIFEST_MAX))
    elif kind == "tags":
        limits = replace(limits, max_str=max(limits.max_str, _TAGS_WIRE_MAX))
    obj = unpackb(data, limits)
    if kind == "delta":
        return Delta.from_wire(obj)
    try:
        model = _BODIES[kind]
    except KeyError:
        raise SchemaError(f"unknown message kind {kind!r}") from None
    return model.from_wire(obj)
