"""OpenAPI: the routes without a key: health, readiness, metrics and this document.

Probes and metrics are for load balancers and Prometheus (bind them to an internal
interface); the document is what every brand's tools read, and holds no tenant's data.
"""

from __future__ import annotations

from typing import Final

from ._schema import Operation, Schema, boolean, obj, ref, string

__all__ = ["OPERATIONS", "SCHEMAS"]

SCHEMAS: Final[dict[str, Schema]] = {
    "Health": obj({"status": string(enum=["ok"])}),
    "Readiness": obj(
        {
            "status": string(enum=["ready", "unavailable"]),
            "checks": obj({"mqtt": boolean(), "influx": boolean(), "state": boolean()}),
        }
    ),
    "OpenApiDocument": {
        "type": "object",
        "required": ["openapi", "info", "paths"],
        "properties": {
            "openapi": string(const="3.1.0"),
            "info": {"type": "object"},
            "paths": {"type": "object"},
        },
        # The document is an OpenAPI document: its own schema is the specification's.
        "additionalProperties": True,
        "description": "this document",
    },
}

OPERATIONS: Final = (
    Operation(
        method="GET",
        path="/healthz",
        operation_id="get_health",
        summary="Liveness: the process serves HTTP",
        tag="service",
        scope="public",
        answer=ref("Health"),
    ),
    Operation(
        method="GET",
        path="/readyz",
        operation_id="get_readiness",
        summary="Readiness: broker connected, InfluxDB and the state store answering",
        tag="service",
        scope="public",
        answer=ref("Readiness"),
        answer_text="ready",
        other_answers={503: ("not ready: `checks` names what is down", ref("Readiness"))},
    ),
    Operation(
        method="GET",
        path="/metrics",
        operation_id="get_metrics",
        summary="Prometheus text exposition",
        tag="service",
        scope="public",
        answer=None,
        answer_type="text/plain",
        answer_text="the metrics (docs/hub.md, 'Metrics')",
    ),
    Operation(
        method="GET",
        path="/v1/openapi.json",
        operation_id="get_openapi",
        summary="This document (OpenAPI 3.1)",
        tag="service",
        scope="public",
        answer=ref("OpenApiDocument"),
    ),
)
