"""Catalog validation, identifiers, topics and pseudonyms."""

from __future__ import annotations

import math

import pytest

from protocol import (
    CATALOG,
    FIELDS,
    PRODUCTS,
    Channel,
    IdentifierError,
    SchemaError,
    TopicError,
    TwinSyncError,
    check_device,
    check_field,
    check_signal_value,
    hub_subscriptions,
    parse_topic,
    pseudonymize,
    signal_spec,
    topic,
)


def test_catalog_is_consistent() -> None:
    assert set(PRODUCTS) == {"coffee", "thermostat", "wearable", "tv"}
    for spec in CATALOG.values():
        check_field(spec.field)
        assert FIELDS[spec.field].merge == ("counter" if spec.kind == "counter" else "lww")
        if spec.kind == "counter":
            assert spec.field.endswith("_total")


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("coffee.brew", 1.5, "wrong_type"),
        ("coffee.brew", True, "wrong_type"),
        ("coffee.brew", 0, "out_of_range"),
        ("thermostat.temperature_c", math.nan, "not_finite"),
        ("thermostat.temperature_c", 500.0, "out_of_range"),
        ("thermostat.mode", "turbo", "bad_choice"),
        ("tv.power", "on", "wrong_type"),
    ],
)
def test_signal_value_rejections_name_their_reason(name: str, value: object, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_signal_value(signal_spec(name), value)
    assert info.value.reason == reason


def test_signal_values_are_normalised() -> None:
    assert check_signal_value(signal_spec("thermostat.temperature_c"), 21) == 21.0
    assert isinstance(check_signal_value(signal_spec("thermostat.temperature_c"), 21), float)
    assert check_signal_value(signal_spec("coffee.brew"), 2) == 2


def test_unknown_signal() -> None:
    with pytest.raises(SchemaError) as info:
        signal_spec("toaster.toast")
    assert info.value.reason == "unknown_signal"


def test_topics_round_trip_and_reject_foreign_topics() -> None:
    t = topic("acme", "dev-1", Channel.DELTA)
    assert t == "ts/v1/acme/dev-1/delta"
    parsed = parse_topic(t)
    assert (parsed.brand, parsed.device, parsed.channel) == ("acme", "dev-1", Channel.DELTA)
    for bad in (
        "ts/v1/acme/dev-1",
        "ts/v2/acme/dev-1/delta",
        "ts/v1/ACME/dev-1/delta",
        "ts/v1/acme/dev-1/nope",
        "ts/v1/acme/broadcast/delta",
        "x/v1/a/b/delta",
    ):
        with pytest.raises(TopicError):
            parse_topic(bad)
    with pytest.raises(IdentifierError):
        topic("acme", "ann@example.com", Channel.DELTA)
    with pytest.raises(IdentifierError):
        check_device("broadcast")


def test_hub_subscriptions_use_a_shared_group_when_asked() -> None:
    assert hub_subscriptions(None) == ["ts/v1/+/+/delta", "ts/v1/+/+/status"]
    assert hub_subscriptions("g") == ["$share/g/ts/v1/+/+/delta", "$share/g/ts/v1/+/+/status"]


def test_hub_subscriptions_can_serve_only_some_brands() -> None:
    assert hub_subscriptions(None, ["acme", "zeta"]) == [
        "ts/v1/acme/+/delta",
        "ts/v1/acme/+/status",
        "ts/v1/zeta/+/delta",
        "ts/v1/zeta/+/status",
    ]
    with pytest.raises(IdentifierError):
        hub_subscriptions(None, ["#"])


def test_pseudonym_is_stable_normalised_keyed_and_epoch_scoped() -> None:
    key, other = b"a" * 32, b"b" * 32
    twin = pseudonymize(key, 1, "Ann.Smith@Example.com ")
    assert twin == pseudonymize(key, 1, "ann.smith@example.com")
    assert twin != pseudonymize(other, 1, "ann.smith@example.com")
    assert pseudonymize(key, 2, "ann.smith@example.com").startswith("2-")
    assert "ann" not in twin
    assert pseudonymize(key, 1, "LOY-1") != pseudonymize(key, 1, "loy-1")  # ids are case-sensitive


@pytest.mark.parametrize(
    ("key", "epoch", "subject"), [(b"short", 1, "a"), (b"k" * 32, -1, "a"), (b"k" * 32, 1, "   ")]
)
def test_pseudonym_rejects_weak_input(key: bytes, epoch: int, subject: str) -> None:
    with pytest.raises(TwinSyncError):
        pseudonymize(key, epoch, subject)
