"""Behaviour tags: the rule language, definitions, and the signed, versioned catalog."""

from __future__ import annotations

import json

import pytest

from protocol import (
    BROADCAST,
    DEFAULT_TAGS,
    FIELDS,
    MAX_CATALOG_BYTES,
    MAX_RULE_CHARS,
    TAG_FIELDS,
    Envelope,
    LimitError,
    SchemaError,
    SignatureError,
    SigningKey,
    TagCatalog,
    TagDefinition,
    TagError,
    TagRule,
    TagsOffer,
    TwinSyncError,
    decode_body,
    feature_names,
    open_envelope,
    packb,
    seal,
)

TV = feature_names("tv")


def _values(**over: float) -> dict[str, float]:
    return {**dict.fromkeys(TV, 0.0), **over}


def test_rules_evaluate_comparisons_with_and_binding_tighter_than_or() -> None:
    rule = TagRule.parse(
        "share_weekend >= 0.45 or share_evening > 0.5 and not (usual_days < 7)", TV
    )
    assert rule.features == ("share_evening", "share_weekend", "usual_days")
    assert rule.holds(_values(share_weekend=0.5))
    assert not rule.holds(_values(share_evening=0.6, usual_days=3))
    assert rule.holds(_values(share_evening=0.6, usual_days=7))
    assert not rule.holds(_values(share_weekend=0.44, share_evening=0.5, usual_days=9))
    eq = TagRule.parse("habit_volume == 20 and recency_h != 1.5", TV)
    assert eq.holds(_values(habit_volume=20, recency_h=2))
    assert not eq.holds(_values(habit_volume=20, recency_h=1.5))


def test_a_non_finite_feature_never_sets_a_tag() -> None:
    assert not TagRule.parse("recency_h >= 0", TV).holds(_values(recency_h=float("nan")))


@pytest.mark.parametrize(
    ("rule", "reason", "says"),
    [
        ("weekend_share >= 0.45", "unknown_feature", "unknown feature 'weekend_share'"),
        ("habit_steps_per_day >= 1", "unknown_feature", "this product's features are"),
        ("share_weekend = 0.45", "bad_operator", "'=' at character 14"),
        ("share_weekend 0.45", "bad_operator", "write one of"),
        ("share_weekend >= 0.45 && usual_days > 1", "bad_operator", "'&'"),
        ("share_weekend >= x", "bad_tag", "expected a number"),
        ("share_weekend >= 0.4 and", "bad_tag", "expected a comparison"),
        ("(share_weekend >= 0.4", "bad_tag", "expected ')'"),
        ("share_weekend >= 0.4 0.5", "bad_tag", "unexpected '0.5'"),
        ("", "bad_tag", "empty"),
        ("share_weekend >= 0.1 or " * 9 + "usual_days > 1", "too_long", "comparisons"),
        ("(" * 5 + "usual_days > 1" + ")" * 5, "too_long", "nested"),
        ("usual_days > 1 or " + "x" * MAX_RULE_CHARS, "too_long", "characters"),
    ],
)
def test_bad_rules_are_refused_with_the_reason_and_what_to_change(
    rule: str, reason: str, says: str
) -> None:
    with pytest.raises(TagError) as caught:
        TagRule.parse(rule, TV)
    assert caught.value.reason == reason
    assert says in str(caught.value)
    assert isinstance(caught.value, SchemaError)
    assert isinstance(caught.value, TwinSyncError)


def test_definitions_check_name_product_description_and_rule() -> None:
    ok = TagDefinition("sports_fan", "tv", "Sports fan.", "habit_share_sports >= 0.3")
    assert ok.field == "tv.tag_sports_fan" == TAG_FIELDS[("tv", "sports_fan")]
    with pytest.raises(TagError, match="unknown product 'car'"):
        TagDefinition("sports_fan", "car", "x", "usual_days > 1")
    with pytest.raises(TagError, match="not a tv tag the wire accepts") as caught:
        TagDefinition("gamer", "tv", "x", "usual_days > 1")
    assert caught.value.reason == "unknown_tag"
    with pytest.raises(TagError, match="description"):
        TagDefinition("sports_fan", "tv", "", "usual_days > 1")
    with pytest.raises(TagError, match=r"tv\.sports_fan: .*unknown feature") as bad:
        TagDefinition("sports_fan", "tv", "x", "habit_share_eco > 0.2")
    assert bad.value.reason == "unknown_feature"


def test_tag_fields_are_boolean_profiling_fields_with_a_ref_beside_them() -> None:
    spec = FIELDS["thermostat.tag_eco_minded"]
    assert (spec.type, spec.merge, spec.purpose, spec.field_class) == (
        "bool",
        "lww",
        "personalization",
        "profile",
    )
    assert FIELDS["thermostat.tags_ref"].type == "str"
    assert FIELDS["thermostat.tags_ref"].field_class == "profile"


def test_catalog_signs_round_trips_and_verifies_like_a_manifest() -> None:
    key = SigningKey.generate()
    signed = TagCatalog(4, DEFAULT_TAGS.tags, created_ms=1_700_000_000_000).sign(key)
    assert signed.ref == "tags@4"
    assert signed.kid == key.kid
    again = TagCatalog.from_json(signed.to_json())
    assert again == signed
    again.verify({key.kid: key.public})
    body = json.loads(signed.to_json())
    body.pop("signature")
    assert json.dumps(body, sort_keys=True, separators=(",", ":")).encode() == (
        signed.signed_bytes()
    )


def test_a_changed_rule_unknown_key_or_bad_hex_fails_verification() -> None:
    key = SigningKey.generate()
    signed = TagCatalog(2, DEFAULT_TAGS.tags).sign(key)
    doc = json.loads(signed.to_json())
    doc["tags"][0]["rule"] = "usual_days >= 0"
    forged = TagCatalog.from_json(json.dumps(doc))
    with pytest.raises(SignatureError):
        forged.verify({key.kid: key.public})
    other = SigningKey.generate()
    with pytest.raises(SignatureError, match="unknown key") as unknown:
        signed.verify({other.kid: other.public})
    assert unknown.value.reason == "unknown_key"
    doc = json.loads(signed.to_json())
    doc["signature"] = "zz"
    with pytest.raises(SignatureError, match="not hex"):
        TagCatalog.from_json(json.dumps(doc)).verify({key.kid: key.public})


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d.update(catalog_version=9), "unsupported catalog_version"),
        (lambda d: d.update(extra=1), "unknown members"),
        (lambda d: d.update(version=0), "positive integer"),
        (lambda d: d["tags"].append(d["tags"][0]), "each product's tag once"),
        (lambda d: d["tags"][0].update(rule="nope >= 1"), "unknown feature 'nope'"),
        (lambda d: d["tags"][0].pop("rule"), "name, product, description, rule"),
        (lambda d: d.update(created_ms="x"), "created_ms"),
        (lambda d: d.pop("tags"), "malformed tag catalog"),
    ],
)
def test_malformed_catalogs_are_refused(mutate: object, says: str) -> None:
    doc = json.loads(DEFAULT_TAGS.to_json())
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(TagError, match=says):
        TagCatalog.from_json(json.dumps(doc))


def test_an_oversized_catalog_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(TagError, match="bytes, at most") as caught:
        TagCatalog.from_json(b"{" + b" " * MAX_CATALOG_BYTES + b"}")
    assert caught.value.reason == "oversized"
    with pytest.raises(TagError, match=r"not a JSON|malformed"):
        TagCatalog.from_json(b"[]")


def test_default_catalog_evaluates_every_product_on_its_own_features() -> None:
    assert DEFAULT_TAGS.ref == "tags@1"
    for product in ("coffee", "thermostat", "tv", "wearable"):
        names = feature_names(product)
        values = dict.fromkeys(names, 0.0)
        out = DEFAULT_TAGS.evaluate(product, values)
        assert out
        assert not any(out.values())
        assert all(f.startswith(f"{product}.tag_") for f in out)
    heavy = DEFAULT_TAGS.evaluate("tv", _values(habit_watch_min_per_day=200, usual_days=10))
    assert heavy["tv.tag_binge_watcher"] is True
    definition = DEFAULT_TAGS.definition("tv.tag_binge_watcher")
    assert definition is not None
    assert "habit_watch_min_per_day >= 180" in definition.rule
    assert DEFAULT_TAGS.definition("tv.tag_nothing") is None


def test_a_tags_offer_round_trips_in_a_hub_signed_broadcast_envelope() -> None:
    key = SigningKey.generate()
    catalog = TagCatalog(2, DEFAULT_TAGS.tags).sign(key)
    offer = TagsOffer(catalog=catalog.to_json())
    envelope = Envelope(
        kind="tags", brand="acme", device=BROADCAST, seq=0, kid=key.kid, sent_ms=1,
        body=packb(offer.to_wire()),
    )  # fmt: skip
    opened = open_envelope(seal(envelope, key)).verify(key.public)
    assert (opened.kind, opened.device) == ("tags", BROADCAST)
    decoded = decode_body("tags", opened.body)
    assert decoded == offer
    assert isinstance(decoded, TagsOffer)
    assert TagCatalog.from_json(decoded.catalog) == catalog


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"catalog": "{}"}, None),  # decodes: the catalog's own checks refuse it later
        ({}, SchemaError),
        ({"catalog": 5}, SchemaError),
        ({"catalog": "{}", "extra": 1}, SchemaError),
        ({"catalog": "x" * (2 * MAX_CATALOG_BYTES + 1)}, LimitError),
    ],
)
def test_malformed_tags_offers_are_refused_whole(
    body: dict[str, object], error: type[Exception] | None
) -> None:
    if error is None:
        decode_body("tags", packb({"catalog": "{}"}))
        return
    with pytest.raises(error):
        decode_body("tags", packb(body))
