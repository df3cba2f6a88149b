"""Model manifests: canonical signing, verification, file hash, parsing errors."""

from __future__ import annotations

import dataclasses

import pytest

from protocol import (
    ModelManifest,
    SchemaError,
    SignatureError,
    SigningKey,
    feature_names,
    sha256_hex,
)

ONNX = b"\x08\x07fake onnx bytes"


def _manifest(**over: object) -> ModelManifest:
    base: dict[str, object] = {
        "name": "segment-coffee",
        "version": 3,
        "kind": "segment",
        "product": "coffee",
        "inputs": feature_names("coffee"),
        "sha256": sha256_hex(ONNX),
        "size": len(ONNX),
        "metrics": {"ari": 0.93},
        "created_ms": 1_700_000_000_000,
    }
    return ModelManifest(**{**base, **over})  # type: ignore[arg-type]


def test_signed_manifest_round_trips_and_verifies() -> None:
    key = SigningKey.generate()
    signed = _manifest().sign(key)
    again = ModelManifest.from_json(signed.to_json())
    assert again == signed
    again.verify({key.kid: key.public})
    again.check_file(ONNX)
    assert again.ref == "segment-coffee@3"


@pytest.mark.parametrize(
    "change",
    [
        {"version": 4},
        {"inputs": ("share_night",)},
        {"sha256": "0" * 64},
        {"threshold": 0.5},
        {"metrics": {"ari": 0.99}},
    ],
)
def test_any_change_breaks_the_signature(change: dict[str, object]) -> None:
    key = SigningKey.generate()
    signed = _manifest().sign(key)
    tampered = dataclasses.replace(signed, **change)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        tampered.verify({key.kid: key.public})


def test_unknown_key_and_wrong_file_are_refused() -> None:
    signed = _manifest().sign(SigningKey.generate())
    other = SigningKey.generate()
    with pytest.raises(SignatureError, match="unknown key"):
        signed.verify({other.kid: other.public})
    with pytest.raises(SignatureError, match="sha256") as exc:
        signed.check_file(ONNX + b"x")
    assert exc.value.reason == "hash_mismatch"


@pytest.mark.parametrize(
    "text",
    ["[]", "{}", '{"manifest_version": 9}', "not json", '{"manifest_version": 1, "name": "x"}'],
)
def test_malformed_manifests_are_schema_errors(text: str) -> None:
    with pytest.raises(SchemaError):
        ModelManifest.from_json(text)


def test_bad_fields_are_refused() -> None:
    for change in ({"name": "Bad Name"}, {"kind": "magic"}, {"version": 0}, {"inputs": ()}):
        with pytest.raises(SchemaError):
            _manifest(**change)
