"""Twin links (key rotation) on the wire: old epoch -> new epoch, validated strictly."""

from __future__ import annotations

import pytest

from protocol import (
    MAX_LINKS_PER_DELTA,
    Delta,
    SchemaError,
    TwinLink,
    decode_body,
    packb,
    pseudonymize,
    twin_epoch,
)

KEY1, KEY2 = b"1" * 32, b"2" * 32
OLD, NEW = pseudonymize(KEY1, 1, "ann"), pseudonymize(KEY2, 2, "ann")


def test_a_delta_may_carry_only_links_and_they_round_trip() -> None:
    delta = Delta(twins=(), links=(TwinLink(OLD, NEW),))
    back = decode_body("delta", packb(delta.to_wire()))
    assert isinstance(back, Delta)
    assert back.links == (TwinLink(OLD, NEW),)
    assert twin_epoch(OLD) == 1
    assert twin_epoch(NEW) == 2
    assert "l" not in Delta(twins=(), links=()).to_wire()


@pytest.mark.parametrize(
    ("links", "reason"),
    [
        ([[NEW, OLD]], "bad_link"),  # backwards
        ([[OLD, pseudonymize(KEY2, 1, "bob")]], "bad_link"),  # same epoch
        ([[OLD, NEW], [OLD, pseudonymize(KEY2, 2, "bob")]], "bad_link"),  # old twice
        ([[OLD, "2-xyz"]], "bad_twin"),
        ([[OLD]], "schema"),
        ([], "schema"),
        ([[OLD, NEW]] * (MAX_LINKS_PER_DELTA + 1), "schema"),
        ("nope", "schema"),
    ],
)
def test_bad_links_are_refused_with_a_reason(links: object, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode_body("delta", packb({"t": [], "l": links}))
    assert info.value.reason == reason
