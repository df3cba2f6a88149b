"""Access (GDPR Art. 15, 20): everything the hub holds about one customer, machine-readable.

For each twin id of the customer (one per key epoch): every field with its value, when it
was last updated, which device reported it (the source), its purpose and class (signal,
feature, prediction, model reference); the devices; the number of stored points; and for
each prediction the model that made it and a plain-language explanation; for each
behaviour tag the rule that set it (its text, its description and the catalog version,
``tags@<n>``). Around it: the
purposes, the recipients (the brand's API keys that may read twins, by name), and how long
the data is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol import (
    DEFAULT_TAGS,
    FIELDS,
    MODEL_FIELDS,
    PURPOSES,
    TAG_FIELDS,
    TAGS_REF_FIELDS,
    TagCatalog,
    TwinState,
)

__all__ = ["PURPOSE_TEXT", "twin_export"]

PURPOSE_TEXT = {
    "service": "operating and servicing your device (needed for the service you use)",
    "analytics": "understanding how products are used (only with your consent)",
    "personalization": "tailoring the product and offers to your habits (only with consent)",
    "marketing": "marketing communication (only with your consent)",
}
assert set(PURPOSE_TEXT) == set(PURPOSES)

_OUTPUT_OF = {field: (product, name) for (product, name), field in MODEL_FIELDS.items()}
_TAG_OF = {field: (product, name) for (product, name), field in TAG_FIELDS.items()}
_TAGS_REFS = frozenset(TAGS_REF_FIELDS.values())
# the catalog every agent ships (the hub adds the one it is configured with)
_KNOWN_CATALOGS: Mapping[str, TagCatalog] = {DEFAULT_TAGS.ref: DEFAULT_TAGS}
_REF_OF = {
    "segment": "segment_model",
    "micro_segment": "micro_model",
    "churn_risk": "churn_model",
    "anomalies_total": "anomaly_model",
}


def _class(name: str) -> str:
    if name in _TAG_OF:
        return "tag"
    if name in _TAGS_REFS:
        return "tag_ref"
    if name in _OUTPUT_OF:
        return "model_ref" if name.endswith("_model") else "prediction"
    if ".f_" in name:
        return "feature"
    return "signal"


def _explain(name: str, value: Any, model: str | None) -> str:
    product, output = _OUTPUT_OF[name]
    by = f"by model {model}, on your {product} itself" if model else f"on your {product}"
    if output == "segment":
        return (
            f"Your {product} usage (times of day, weekdays and weekends, how often, your "
            f"settings) places you in customer segment {value}; computed {by}. Segments "
            "group customers with similar habits and are used for personalization."
        )
    if output == "micro_segment":
        return (
            f"Inside your customer segment, your {product} usage places you in "
            f"micro-segment {value} (0 when the segment is not split further); computed "
            f"{by}. Used for personalization."
        )
    if output == "churn_risk":
        return (
            f"An estimated {float(value):.0%} chance that you stop using your {product} "
            f"in the next two weeks, from your recent usage compared with your own usual "
            f"usage; computed {by}. Used for personalization."
        )
    return (
        f"{value} readings from your {product} looked implausible (a sensor or data "
        f"fault) and were flagged; computed {by}. Used to service the device."
    )


def _tag(
    name: str, value: Any, updated_ms: int, ref: str | None, catalogs: Mapping[str, TagCatalog]
) -> dict[str, Any]:
    """A tag with the rule that set it (as the catalog the device used states it)."""
    product, tag = _TAG_OF[name]
    catalog = catalogs.get(ref or "")
    definition = None if catalog is None else catalog.definition(name)
    return {
        "field": name,
        "tag": tag,
        "product": product,
        "value": value,
        "updated_ms": updated_ms,
        "catalog": ref,
        "rule": None if definition is None else definition.rule,
        "description": None if definition is None else definition.description,
    }


def twin_export(
    twin: str,
    state: TwinState,
    points: int,
    *,
    catalogs: Mapping[str, TagCatalog] = _KNOWN_CATALOGS,
) -> dict[str, Any]:
    """One twin's part of an access export (``catalogs``: the tag catalogs whose rules
    it can quote, by ref)."""
    fields = state.fields()
    out_fields = []
    predictions = []
    tags = []
    for name, fv in fields.items():
        spec = FIELDS[name]
        out_fields.append(
            {
                "field": name,
                "value": fv.value,
                "updated_ms": fv.updated_ms,
                "source_device": fv.device,
                "purpose": spec.purpose,
                "class": _class(name),
                "unit": spec.unit,
            }
        )
        if name in _TAG_OF:
            ref_fv = fields.get(TAGS_REF_FIELDS[_TAG_OF[name][0]])
            tags.append(
                _tag(
                    name,
                    fv.value,
                    fv.updated_ms,
                    None if ref_fv is None else str(ref_fv.value),
                    catalogs,
                )
            )
        if _class(name) == "prediction":
            product, output = _OUTPUT_OF[name]
            ref_field = MODEL_FIELDS[(product, _REF_OF[output])]
            model = fields[ref_field].value if ref_field in fields else None
            predictions.append(
                {
                    "field": name,
                    "value": fv.value,
                    "model": model,
                    "explanation": _explain(name, fv.value, None if model is None else str(model)),
                }
            )
    return {
        "twin": twin,
        "epoch": int(twin.split("-", 1)[0]),
        "fields": out_fields,
        "predictions": predictions,
        "tags": tags,
        "devices": sorted({fv.device for fv in fields.values()}),
        "stored_points": points,
    }
