"""Behaviour tags: interpretable yes/no facts about a customer, computed on the device.

A tag is a :class:`TagDefinition` (name, product, a description a customer can read, and
a :class:`protocol.TagRule` over the product's shared features). Tags travel as boolean
twin fields ``<product>.tag_<name>`` (``tag has <name>`` in the twin query language),
with ``<product>.tags_ref`` (``tags@<version>``) naming the catalog whose rules set them.
They profile the person: purpose ``personalization``, field class ``profile``, so the
consent gate, objection, suppression and retention treat them like segments.

The wire accepts only the tag names of :data:`TAG_NAMES` (the hub must know a field's
type before it stores it): a catalog version may change rules, descriptions, and which
of these names it uses; a new name is a protocol release, like any new twin field.

A :class:`TagCatalog` is versioned and signed exactly as model manifests are: canonical
JSON (sorted keys, no spaces) minus the ``signature`` member, Ed25519 under a hub key
(``kid``), verified with the keys the device trusts. :data:`DEFAULT_TAGS` is the catalog
every package ships (version 1, unsigned: it is part of the installed code, like the
built-in models); docs/edge-agent.md ("Behaviour tags") lists its rules and the rates
they reach on a simulated fleet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ._catalog import FIELDS, PRODUCTS, FieldSpec
from ._errors import SignatureError
from ._feature_schema import feature_names
from ._keys import SigningKey, VerifyKey
from ._tag_rules import TagError, TagRule

__all__ = [
    "DEFAULT_TAGS",
    "MAX_CATALOG_BYTES",
    "TAGS_REF_FIELDS",
    "TAG_CATALOG_VERSION",
    "TAG_FIELDS",
    "TAG_NAMES",
    "TagCatalog",
    "TagDefinition",
]

#: Format version of the catalog document (not the catalog's own ``version``).
TAG_CATALOG_VERSION = 1
#: A larger catalog document is refused before it is parsed.
MAX_CATALOG_BYTES = 64 * 1024
_MAX_TAGS = 64
_MAX_DESCRIPTION = 200
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

_COMMON_TAGS = ("weekend_heavy", "evening_routine", "morning_routine", "declining_use")
#: The tag names the wire accepts, per product (see the module docstring).
TAG_NAMES: dict[str, tuple[str, ...]] = {
    "coffee": (*_COMMON_TAGS, "strong_coffee", "many_cups"),
    "thermostat": (*_COMMON_TAGS, "eco_minded", "warm_home"),
    "wearable": (*_COMMON_TAGS, "active_lifestyle", "short_sleeper"),
    "tv": (*_COMMON_TAGS, "sports_fan", "news_watcher", "binge_watcher"),
}
assert set(TAG_NAMES) == set(PRODUCTS)

#: twin field of each (product, tag name)
TAG_FIELDS: dict[tuple[str, str], str] = {}
#: twin field naming the catalog (``tags@<version>``) that set a product's tags
TAGS_REF_FIELDS: dict[str, str] = {}
for _product, _names in sorted(TAG_NAMES.items()):
    for _name in _names:
        _field = f"{_product}.tag_{_name}"
        TAG_FIELDS[(_product, _name)] = _field
        FIELDS[_field] = FieldSpec(_field, _product, "bool", "lww", "personalization")
    TAGS_REF_FIELDS[_product] = f"{_product}.tags_ref"
    FIELDS[f"{_product}.tags_ref"] = FieldSpec(
        f"{_product}.tags_ref", _product, "str", "lww", "personalization"
    )
del _product, _names, _name, _field


@dataclass(frozen=True)
class TagDefinition:
    """One tag: validated on construction (name, product, description, rule)."""

    name: str
    product: str
    description: str
    rule: str

    def __post_init__(self) -> None:
        if self.product not in TAG_NAMES:
            raise TagError(
                f"tag {self.name!r}: unknown product {self.product!r}; one of "
                f"{', '.join(sorted(TAG_NAMES))}",
                reason="unknown_product",
            )
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise TagError(f"tag name {self.name!r} must match {_NAME.pattern}")
        if self.name not in TAG_NAMES[self.product]:
            raise TagError(
                f"tag {self.name!r} is not a {self.product} tag the wire accepts; use one of "
                f"{', '.join(TAG_NAMES[self.product])} (a new name needs a protocol release)",
                reason="unknown_tag",
            )
        if not isinstance(self.description, str) or not 0 < len(self.description) <= (
            _MAX_DESCRIPTION
        ):
            raise TagError(
                f"tag {self.name!r}: the description must be 1 to {_MAX_DESCRIPTION} characters"
            )
        try:
            self.parsed  # noqa: B018 - validates the rule now, not at first use
        except TagError as exc:
            raise TagError(f"tag {self.product}.{self.name}: {exc}", reason=exc.reason) from None

    @property
    def parsed(self) -> TagRule:
        """The rule, parsed over the product's features."""
        return TagRule.parse(self.rule, feature_names(self.product))

    @property
    def field(self) -> str:
        """The twin field that carries this tag."""
        return TAG_FIELDS[(self.product, self.name)]


@dataclass(frozen=True)
class TagCatalog:
    """A versioned, signed set of tag definitions (see the module docstring)."""

    version: int
    tags: tuple[TagDefinition, ...]
    created_ms: int = 0
    kid: str = ""
    signature: str = ""
    _rules: dict[str, TagRule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or not 1 <= self.version < 1 << 31:
            raise TagError("the tag catalog version must be a positive integer")
        if len(self.tags) > _MAX_TAGS:
            raise TagError(f"a tag catalog holds at most {_MAX_TAGS} tags", reason="too_long")
        fields = [t.field for t in self.tags]
        if len(set(fields)) != len(fields):
            raise TagError("a tag catalog defines each product's tag once", reason="duplicate")
        self._rules.update({t.field: t.parsed for t in self.tags})

    @property
    def ref(self) -> str:
        """``tags@<version>``, how twins and statuses name the catalog."""
        return f"tags@{self.version}"

    def for_product(self, product: str) -> tuple[TagDefinition, ...]:
        """The definitions of ``product``'s tags."""
        return tuple(t for t in self.tags if t.product == product)

    def evaluate(self, product: str, values: dict[str, float]) -> dict[str, bool]:
        """field -> whether the tag holds, for every ``product`` tag (``values``: the
        product's feature vector by name)."""
        return {t.field: self._rules[t.field].holds(values) for t in self.for_product(product)}

    def definition(self, field_name: str) -> TagDefinition | None:
        """The definition behind twin field ``field_name``, if this catalog has one."""
        return next((t for t in self.tags if t.field == field_name), None)

    def _body(self) -> dict[str, Any]:
        return {
            "catalog_version": TAG_CATALOG_VERSION,
            "version": self.version,
            "created_ms": self.created_ms,
            "kid": self.kid,
            "tags": [
                {"name": t.name, "product": t.product, "description": t.description, "rule": t.rule}
                for t in self.tags
            ],
        }

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers."""
        return json.dumps(self._body(), sort_keys=True, separators=(",", ":")).encode()

    def sign(self, key: SigningKey) -> TagCatalog:
        """A copy carrying ``key``'s signature (and kid)."""
        unsigned = TagCatalog(self.version, self.tags, self.created_ms, key.kid, "")
        signature = key.sign(unsigned.signed_bytes()).hex()
        return TagCatalog(self.version, self.tags, self.created_ms, key.kid, signature)

    def verify(self, keys: dict[str, VerifyKey]) -> None:
        """Raise SignatureError unless signed by one of ``keys`` (kid -> key)."""
        key = keys.get(self.kid)
        if key is None:
            raise SignatureError(
                f"tag catalog signed by unknown key {self.kid!r}", reason="unknown_key"
            )
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            raise SignatureError("tag catalog signature is not hex") from None
        key.verify(signature, self.signed_bytes())

    def to_json(self) -> str:
        """The document form (canonical body plus the signature)."""
        return json.dumps({**self._body(), "signature": self.signature}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> TagCatalog:
        """Parse a catalog document; raise :class:`TagError` on anything malformed or
        larger than :data:`MAX_CATALOG_BYTES` (reason ``oversized``)."""
        if len(text) > MAX_CATALOG_BYTES:
            raise TagError(
                f"tag catalog is {len(text)} bytes, at most {MAX_CATALOG_BYTES}",
                reason="oversized",
            )
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("a tag catalog is a JSON object")
            if raw.get("catalog_version") != TAG_CATALOG_VERSION:
                raise ValueError(f"unsupported catalog_version {raw.get('catalog_version')!r}")
            extra = set(raw) - {"catalog_version", "version", "created_ms", "kid", "tags"}
            if extra - {"signature"}:
                raise ValueError(f"unknown members {sorted(extra - {'signature'})}")
            tags = []
            for t in raw["tags"]:
                if not isinstance(t, dict) or set(t) != {"name", "product", "description", "rule"}:
                    raise ValueError("each tag is {name, product, description, rule}")
                tags.append(TagDefinition(t["name"], t["product"], t["description"], t["rule"]))
            if not isinstance(raw["created_ms"], int) or not isinstance(raw["kid"], str):
                raise TypeError("created_ms is an integer, kid a string")
            return cls(
                raw["version"], tuple(tags), raw["created_ms"], raw["kid"], raw.get("signature", "")
            )
        except TagError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise TagError(f"malformed tag catalog: {exc}") from None


# Rules lean on the customer's own history: no tag before a week of usual use, so a new
# customer is not labelled from a few days. Thresholds were set on a simulated realistic
# fleet (docs/edge-agent.md, "Behaviour tags", has the rates): a thermostat's dayparts and
# weekends, and a watch's (worn all day), do not tell customers apart, so those products
# have no routine tags.
_SETTLED = "usual_days >= 7"
_WEEKEND = (
    "weekend_heavy",
    "Uses it mostly at weekends: at least 45% of uses fall on Saturday or Sunday.",
    f"share_weekend >= 0.45 and {_SETTLED}",
)
_EVENING = (
    "evening_routine",
    "An evening routine: at least half of uses are between 18:00 and midnight.",
    f"share_evening >= 0.5 and {_SETTLED}",
)
_MORNING = (
    "morning_routine",
    "A morning routine: at least 40% of uses are between 06:00 and noon.",
    f"share_morning >= 0.4 and {_SETTLED}",
)
_DECLINING = (
    "declining_use",
    "Uses it clearly less than usual: under half the usual uses over the last two weeks.",
    f"use_ratio_14d <= 0.5 and uses_vs_usual_14d <= -3 and {_SETTLED}",
)
_RULES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "coffee": (
        _WEEKEND, _EVENING, _MORNING, _DECLINING,
        ("strong_coffee", "Prefers strong coffee (average strength 4.25 or more).",
         f"habit_strength >= 4.25 and {_SETTLED}"),
        ("many_cups", "Drinks many cups: 4 or more a day on average.",
         f"habit_cups_per_day >= 4 and {_SETTLED}"),
    ),
    "thermostat": (
        _DECLINING,
        ("eco_minded", "Eco-minded: eco mode a fifth of the time or more.",
         f"habit_share_eco >= 0.2 and {_SETTLED}"),
        ("warm_home", "Likes a warm home: comfort setpoint 24 °C or more.",
         f"habit_comfort_c >= 24 and {_SETTLED}"),
    ),
    "wearable": (
        _WEEKEND, _DECLINING,
        ("active_lifestyle", "Active: 9,000 steps a day or more on average.",
         f"habit_steps_per_day >= 9000 and {_SETTLED}"),
        ("short_sleeper", "Little tracked sleep: under 3.5 hours a night on average.",
         f"habit_sleep_min_per_day < 210 and habit_sleep_min_per_day > 0 and {_SETTLED}"),
    ),
    "tv": (
        _WEEKEND, _EVENING, _MORNING, _DECLINING,
        ("sports_fan", "Sports fan: a third or more of what is watched is sports.",
         f"habit_share_sports >= 0.33 and {_SETTLED}"),
        ("news_watcher", "News watcher: a third or more of what is watched is news.",
         f"habit_share_news >= 0.33 and {_SETTLED}"),
        ("binge_watcher", "Watches a lot: 3 hours a day or more on average.",
         f"habit_watch_min_per_day >= 180 and {_SETTLED}"),
    ),
}  # fmt: skip
assert set(_RULES) == set(TAG_NAMES)

#: The catalog the package ships (version 1, unsigned; see the module docstring).
DEFAULT_TAGS = TagCatalog(
    1,
    tuple(TagDefinition(n, p, d, r) for p in sorted(_RULES) for n, d, r in _RULES[p]),
)
