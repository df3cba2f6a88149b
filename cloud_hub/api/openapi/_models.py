"""OpenAPI: models, cohorts and rollouts (upload and roll out: admin; read: read).

The manifest's schema is generated from :class:`protocol.ModelManifest`, the dataclass
the upload route parses it into.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import TypeAdapter

from protocol import MAX_MODEL_BYTES, ModelManifest

from ._schema import (
    MS,
    Operation,
    Param,
    Schema,
    array,
    integer,
    mapping,
    nullable,
    number,
    obj,
    ref,
    string,
)
from ._twins import BRAND, PRODUCT

__all__ = ["OPERATIONS", "SCHEMAS"]


def _manifest() -> Schema:
    schema: dict[str, Any] = TypeAdapter(ModelManifest).json_schema()
    # The file form carries its format version beside the dataclass's fields.
    schema["properties"]["manifest_version"] = integer(const=1)
    return schema


_REF: Final = string("name@version", pattern="^[a-z][a-z0-9_-]{0,63}@[0-9]+$")
_COHORT_NAME: Final = string(pattern="^[A-Za-z0-9_-]{1,64}$")
_COHORT: Final = Param(
    name="cohort", where="path", schema=_COHORT_NAME, description="the cohort", example="beta"
)
_TARGET: Final = {
    "oneOf": [
        obj({"all": {"const": True}}, description="every device of the model's product"),
        obj(
            {"percent": number(exclusiveMinimum=0, maximum=100)},
            description="this share of the product's devices, in a fixed order per model name",
        ),
        obj({"cohort": _COHORT_NAME}, description="the cohort's devices, live"),
    ]
}
_SUMMARY: Final = {
    "model": _REF,
    "name": string(),
    "version": integer(minimum=1),
    "kind": string(enum=["segment", "churn", "anomaly", "micro"]),
    "product": PRODUCT,
    "sha256": string(),
    "size": integer(minimum=0),
    "metrics": mapping(number(), "held-out metrics from training"),
    "signed_by": nullable(string("the key id that signed the manifest")),
    "created_ms": MS,
}
_ROLLOUT: Final = {
    "id": integer(minimum=1),
    "model": _REF,
    "product": PRODUCT,
    "target": _TARGET,
    "created_ms": MS,
    "devices": integer("devices the rollout addresses now", minimum=0),
}
_PROGRESS: Final = {
    "running": integer(minimum=0),
    "refused": integer(minimum=0),
    "pending": integer(minimum=0),
    "refusals": mapping(integer(minimum=1), "devices that refused it, by reason"),
}

SCHEMAS: Final[dict[str, Schema]] = {
    "ModelManifest": _manifest(),
    "ModelUpload": obj(
        {
            "manifest": ref("ModelManifest"),
            "model": string(
                f"the ONNX file (at most {MAX_MODEL_BYTES} bytes)",
                contentMediaType="application/octet-stream",
            ),
        }
    ),
    "Model": obj(_SUMMARY),
    "ModelUploaded": obj(
        {**_SUMMARY, "warnings": array(string(), "what the hub could not vouch for")}
    ),
    "Models": obj({"brand": string(), "models": array(ref("Model"))}),
    "CohortMembers": obj({"devices": array(string("a device id"), maxItems=100_000)}),
    "Cohort": obj({"brand": string(), "cohort": string(), "devices": array(string())}),
    "NewRollout": obj({"model": _REF, "target": _TARGET}),
    "Rollout": obj(_ROLLOUT),
    "RolloutProgress": obj({**_ROLLOUT, **_PROGRESS}),
    "RolloutDetail": obj(
        {
            **_ROLLOUT,
            **_PROGRESS,
            "members": mapping(
                obj(
                    {"state": string(enum=["running", "refused", "pending"])},
                    {"reason": string("why the device refused it")},
                ),
                "per device",
            ),
        }
    ),
    "Rollouts": obj({"brand": string(), "rollouts": array(ref("RolloutProgress"))}),
}

_BASE = "/v1/brands/{brand}"
_JSON_ERRORS: Final = ("bad_brand", "bad_json")
OPERATIONS: Final = (
    Operation(
        method="POST",
        path=f"{_BASE}/models",
        operation_id="upload_model",
        summary="Upload a model: its manifest and ONNX file",
        tag="models",
        scope="admin",
        description=(
            "The hub refuses a file that does not match its manifest and warns (`warnings`) "
            "about a signature it cannot verify or inputs that differ from its feature "
            "schema: devices decide (docs/hub.md, 'Model rollout')."
        ),
        params=(BRAND,),
        body=ref("ModelUpload"),
        body_type="multipart/form-data",
        status=201,
        answer=ref("ModelUploaded"),
        answer_text="the model, stored",
        errors={
            400: ("bad_brand", "bad_upload", "bad_manifest"),
            409: ("version_exists",),
            413: ("too_large",),
            422: ("hash_mismatch",),
        },
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/models",
        operation_id="list_models",
        summary="Uploaded models",
        tag="models",
        scope="read",
        params=(BRAND,),
        answer=ref("Models"),
        errors={400: ("bad_brand",)},
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/models/{{name}}/{{version}}/model.onnx",
        operation_id="download_model",
        summary="A model's ONNX file (what devices download)",
        tag="models",
        scope="device",
        params=(
            BRAND,
            Param(
                name="name",
                where="path",
                schema=string(),
                description="the model's name",
                example="churn-coffee",
            ),
            Param(
                name="version",
                where="path",
                schema=integer(minimum=0, maximum=10**9 - 1),
                description="the model's version",
                example=1,
            ),
            Param(
                name="sha256",
                where="query",
                schema=string(pattern="^[0-9a-f]{64}$"),
                description="the file's hash: answered only if it is this file (a signed "
                "URL names it)",
            ),
        ),
        answer=None,
        answer_type="application/octet-stream",
        answer_text="the ONNX file",
        errors={400: ("bad_brand",), 404: ("unknown_model",)},
    ),
    Operation(
        method="PUT",
        path=f"{_BASE}/cohorts/{{cohort}}",
        operation_id="put_cohort",
        summary="Replace a cohort's devices",
        tag="rollouts",
        scope="admin",
        params=(BRAND, _COHORT),
        body=ref("CohortMembers"),
        answer=ref("Cohort"),
        errors={
            400: (*_JSON_ERRORS, "bad_cohort", "bad_device", "too_big"),
            413: ("too_large",),
        },
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/cohorts/{{cohort}}",
        operation_id="get_cohort",
        summary="A cohort's devices",
        tag="rollouts",
        scope="read",
        params=(BRAND, _COHORT),
        answer=ref("Cohort"),
        errors={400: ("bad_brand", "bad_cohort")},
    ),
    Operation(
        method="POST",
        path=f"{_BASE}/rollouts",
        operation_id="create_rollout",
        summary="Roll a model out to every device, a share, or a cohort",
        tag="rollouts",
        scope="admin",
        params=(BRAND,),
        body=ref("NewRollout"),
        status=201,
        answer=ref("Rollout"),
        answer_text="the rollout, created",
        errors={
            400: (*_JSON_ERRORS, "bad_model", "bad_target", "bad_cohort", "unknown_cohort"),
            404: ("unknown_model",),
            413: ("too_large",),
        },
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/rollouts",
        operation_id="list_rollouts",
        summary="Every rollout with its progress counts",
        tag="rollouts",
        scope="read",
        params=(BRAND,),
        answer=ref("Rollouts"),
        errors={400: ("bad_brand",)},
        store=True,
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/rollouts/{{id}}",
        operation_id="get_rollout",
        summary="A rollout and the state of each device it targets",
        tag="rollouts",
        scope="read",
        params=(
            BRAND,
            Param(
                name="id",
                where="path",
                schema=integer(minimum=0),
                description="the rollout's id",
                example=1,
            ),
        ),
        answer=ref("RolloutDetail"),
        errors={400: ("bad_brand",), 404: ("unknown_rollout",)},
        store=True,
    ),
)
