"""Access (GDPR Art. 15, 20): everything the hub holds about one customer, machine-readable.

For each twin id of the customer (one per key epoch): every field with its value, when it
was last updated, which device reported it (the source), its purpose and class (signal,
feature, prediction, model reference); the devices; the number of stored points; and for
each prediction the model that made it and a plain-language explanation. Around it: the
purposes, the recipients (the brand's API keys that may read twins, by name), and how long
the data is kept.
"""

from __future__ import annotations

from typing import Any

from protocol import FIELDS, MODEL_FIELDS, PURPOSES, TwinState

__all__ = ["PURPOSE_TEXT", "twin_export"]

PURPOSE_TEXT = {
    "service": "operating and servicing your device (needed for the service you use)",
    "analytics": "understanding how products are used (only with your consent)",
    "personalization": "tailoring the product and offers to your habits (only with consent)",
    "marketing": "marketing communication (only with your consent)",
}
assert set(PURPOSE_TEXT) == set(PURPOSES)

_OUTPUT_OF = {field: (product, name) for (product, name), field in MODEL_FIELDS.items()}
_REF_OF = {
    "segment": "segment_model",
    "churn_risk": "churn_model",
    "anomalies_total": "anomaly_model",
}


def _class(name: str) -> str:
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


def twin_export(twin: str, state: TwinState, points: int) -> dict[str, Any]:
    """One twin's part of an access export."""
    fields = state.fields()
    out_fields = []
    predictions = []
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
        "devices": sorted({fv.device for fv in fields.values()}),
        "stored_points": points,
    }
