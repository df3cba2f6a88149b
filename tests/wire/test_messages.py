"""Message bodies: every type round-trips; malformed input raises SchemaError, whole or nothing."""

from __future__ import annotations

import math

import pytest

from protocol import (
    HLC,
    MAX_OPS_PER_DELTA,
    Ack,
    ConsentEntry,
    DecodeError,
    Delta,
    Desired,
    LimitError,
    ModelOffer,
    ModelSet,
    OfferExposure,
    Op,
    Rejection,
    SchemaError,
    SignalIn,
    Status,
    TwinOps,
    decode_body,
    packb,
    pseudonymize,
)

TWIN = pseudonymize(b"k" * 32, 1, "ann@example.com")
T0 = HLC(1_700_000_000_000, 0).pack()


def _delta_wire(ops: list[list[object]], twin: object = TWIN) -> bytes:
    return packb({"t": [[twin, ops]]})


def test_delta_round_trip_preserves_types() -> None:
    delta = Delta(
        twins=(
            TwinOps(
                TWIN,
                (
                    Op(T0, "coffee.brews_total", 3),
                    Op(T0 + 1, "thermostat.temperature_c", 21.5),
                    Op(T0 + 2, "thermostat.mode", "eco"),
                    Op(T0 + 3, "tv.power", True),
                ),
            ),
        )
    )
    decoded = decode_body("delta", packb(delta.to_wire()))
    assert decoded == delta
    assert isinstance(decoded, Delta)
    assert decoded.op_count == 4


def test_int_value_for_float_field_is_normalised_to_float() -> None:
    decoded = decode_body("delta", _delta_wire([[T0, "thermostat.temperature_c", 21]]))
    assert isinstance(decoded, Delta)
    value = decoded.twins[0].ops[0].value
    assert value == 21.0
    assert isinstance(value, float)


@pytest.mark.parametrize(
    "ops",
    [
        [[T0, "no.such_field", 1]],
        [[T0, "coffee.brews_total", 1.5]],  # int field, float value
        [[T0, "coffee.brews_total", True]],  # bool is not an int here
        [[T0, "tv.power", 1]],  # int is not a bool
        [[T0, "thermostat.mode", 3]],
        [[T0, "thermostat.temperature_c", math.nan]],
        [[T0, "thermostat.temperature_c", math.inf]],
        [[T0, "coffee.brews_total", -1]],  # counters never go down
        [[-5, "coffee.brews_total", 1]],
        [["x", "coffee.brews_total", 1]],
        [[T0, "coffee.brews_total"]],  # missing value
        [[T0, 7, 1]],
        [],  # empty op list
        [[T0, "thermostat.mode", "x" * 65]],
    ],
)
def test_bad_ops_are_schema_errors(ops: list[list[object]]) -> None:
    with pytest.raises(SchemaError):
        decode_body("delta", _delta_wire(ops))


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"t": []},
        {"t": "x"},
        {"t": [], "extra": 1},
        {"t": [["not-a-twin", [[T0, "coffee.brews_total", 1]]]]},
        {"t": [[TWIN, [[T0, "coffee.brews_total", 1]]], [TWIN, [[T0, "coffee.brews_total", 2]]]]},
        [1, 2],
    ],
)
def test_bad_delta_shapes_are_schema_errors(obj: object) -> None:
    with pytest.raises(SchemaError):
        decode_body("delta", packb(obj))


def test_too_many_ops_is_rejected() -> None:
    ops = [[T0 + i, "coffee.brews_total", i] for i in range(MAX_OPS_PER_DELTA + 1)]
    with pytest.raises(DecodeError):
        decode_body("delta", _delta_wire(ops))


def test_long_strings_hit_the_decoder_limit() -> None:
    with pytest.raises(LimitError):
        decode_body("delta", _delta_wire([[T0, "thermostat.mode", "x" * 1000]]))


@pytest.mark.parametrize(
    "body",
    [
        Ack(seqs=(1, 2, 3), rejected=(Rejection(seq=4, reason="schema"),), hub_ms=5),
        Status(online=True, product="coffee", agent_version="0.1.0", outbox_depth=3),
        Desired(version=2, settings={"flush_interval_ms": 500, "mode": "eco"}),
        ModelSet(
            version=3,
            models=(ModelOffer(manifest="{" + "x" * 5000 + "}", url="https://hub/m.onnx"),),
        ),
        OfferExposure(
            experiment="exp-0123456789ab", offer="10% off", twins=("1-" + "a" * 32,), ts_ms=7
        ),
    ],
)
def test_bodies_round_trip(body: Ack | Status | Desired | ModelSet | OfferExposure) -> None:
    kinds = {Ack: "ack", Status: "status", Desired: "desired", ModelSet: "model"}
    kind = {**kinds, OfferExposure: "offer"}[type(body)]
    assert decode_body(kind, packb(body.to_wire())) == body


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("ack", {"seqs": [1], "hub_ms": "5"}),
        ("ack", {"seqs": ["1"], "hub_ms": 5}),
        ("ack", {"seqs": [1]}),
        ("ack", {"seqs": [1], "hub_ms": 5, "extra": 1}),
        ("status", {"online": 1, "product": "x", "agent_version": "1"}),
        ("status", {"online": True, "product": "x", "agent_version": "1", "outbox_depth": -1}),
        ("desired", {"version": 1, "settings": {"a": [1]}}),
        ("model", {"version": 0, "models": []}),
        ("model", {"version": 1, "models": [{"manifest": "{}", "url": "file:///etc/passwd"}]}),
        ("model", {"version": 1, "models": [{"manifest": "{}", "url": "http://h/x", "y": 1}]}),
        ("offer", {"experiment": "../x", "offer": "x", "twins": ["1-" + "a" * 32], "ts_ms": 1}),
        (
            "offer",
            {"experiment": "exp-0123456789ab", "offer": "", "twins": ["1-" + "a" * 32], "ts_ms": 1},
        ),
        ("offer", {"experiment": "exp-0123456789ab", "offer": "x", "twins": [], "ts_ms": 1}),
        (
            "offer",
            {
                "experiment": "exp-0123456789ab",
                "offer": "x" * 65,
                "twins": ["1-" + "a" * 32],
                "ts_ms": 1,
            },
        ),
        (
            "offer",
            {
                "experiment": "exp-0123456789ab",
                "offer": "x",
                "twins": ["1-" + "a" * 32] * 65,
                "ts_ms": 1,
            },
        ),
        ("nope", {}),
    ],
)
def test_bad_bodies_are_schema_errors(kind: str, obj: object) -> None:
    with pytest.raises(SchemaError):
        decode_body(kind, packb(obj))


def test_model_sets_have_bounded_manifests() -> None:
    body = {"version": 1, "models": [{"manifest": "x" * (64 * 1024), "url": "http://h/m"}]}
    with pytest.raises(LimitError):
        decode_body("model", packb(body))
    # ... and only model sets carry long strings
    with pytest.raises(LimitError):
        decode_body("desired", packb({"version": 1, "settings": {"a": "x" * 5000}}))


def test_signal_schema_is_strict() -> None:
    ok = SignalIn.model_validate(
        {"seq": 1, "ts": 5, "subject": "a", "name": "tv.power", "value": True}
    )
    assert ok.value is True
    for bad in (
        {"seq": "1", "ts": 5, "subject": "a", "name": "tv.power", "value": True},
        {"seq": 1, "ts": 5, "subject": "", "name": "tv.power", "value": True},
        {"seq": 1, "ts": 5, "subject": "a", "name": "tv.power", "value": None},
        {"seq": 1, "ts": 5, "subject": "a", "name": "tv.power", "value": True, "x": 1},
    ):
        with pytest.raises(ValueError, match="validation error"):
            SignalIn.model_validate(bad)


def test_consent_entries_ride_in_deltas() -> None:
    entry = ConsentEntry(TWIN, 1_700_000_000_000, (("analytics", True),), "device", "v3")
    delta = Delta(twins=(), consent=(entry,))
    back = decode_body("delta", packb(delta.to_wire()))
    assert isinstance(back, Delta)
    assert back.consent == (entry,)
    assert back.twins == ()
    plain = Delta(twins=(TwinOps(TWIN, (Op(T0, "coffee.brews_total", 1),)),))
    assert "c" not in plain.to_wire()  # no consent: the old wire form


@pytest.mark.parametrize(
    "entry",
    [
        [TWIN, 1, {"service": True}, "device", "v1"],  # service needs no consent
        [TWIN, 1, {"analytics": 1}, "device", "v1"],
        [TWIN, 1, {}, "device", "v1"],
        [TWIN, 1, {"analytics": True}, "someone", "v1"],
        [TWIN, 1, {"analytics": True}, "device", ""],
        [TWIN, -1, {"analytics": True}, "device", "v1"],
        ["ann@example.com", 1, {"analytics": True}, "device", "v1"],  # a raw id, not a twin
        [TWIN, 1, {"analytics": True}, "device"],
    ],
)
def test_bad_consent_entries_are_schema_errors(entry: list[object]) -> None:
    with pytest.raises(SchemaError):
        decode_body("delta", packb({"t": [], "c": [entry]}))
