"""The on-device model runtime: verified ONNX models, installed durably, served fast.

A model is an ONNX file plus a hub-signed :class:`protocol.ModelManifest`. The store
serves at most one model per kind (segment, churn, anomaly); installed models win over
the built-in defaults shipped with the package.

Layout under ``root``::

    <name>/current.json           {"version": n, "previous": m | null}  (the commit point)
    <name>/<version>/model.onnx
    <name>/<version>/manifest.json

``install`` checks everything (signature, hash, product, input schema, no downgrade, a
fresh onnxruntime session, I/O conventions, smoke inference) *before* it writes a byte,
then writes the version directory under a temporary name, renames it into place and only
then replaces ``current.json`` (temp file + fsync + ``os.replace`` + fsync of the
directory). A crash at any point leaves either the old or the new pointer, never a
pointer to a half-written model; leftovers are ignored and cleaned up later. The running
session is swapped by a single reference assignment, so a concurrent reader sees the old
model or the new one, never a mix.

Models on disk are checked again at start-up (signature with the *current* hub keys, hash,
schema, smoke run): a file damaged on disk, or signed by a key the device no longer
trusts, falls back to the previous version, then to the built-in default.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# onnxruntime's Linux wheels (1.32) start a telemetry thread when the module loads; it
# queues usage events in a SQLite file under ~/.cache/Microsoft/DeveloperTools for upload
# to Microsoft. A device must not phone home or write to its flash behind our back, and
# the thread and its buffers cost ~1.5 MiB of RSS. The variable is read at import, so it
# is set first; an operator's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime as ort

from protocol import (
    ANOMALY_FEATURES,
    ModelKind,
    ModelManifest,
    SchemaError,
    SignatureError,
    VerifyKey,
    feature_names,
)

from ._errors import ModelError, ModelRejected

__all__ = ["BUILTIN_MODELS", "MAX_MODEL_BYTES", "ModelFailure", "ModelStore"]

log = logging.getLogger("edge_agent.models")

#: Where the package's default models live (``<name>.onnx`` + ``<name>.manifest.json``).
BUILTIN_MODELS: Final = Path(__file__).resolve().parent / "models"
#: Larger model files are refused before anything else is done with them.
MAX_MODEL_BYTES: Final = 64 * 1024 * 1024

_INPUT: Final = "features"
_OUTPUT: Final[dict[str, str]] = {"segment": "label", "churn": "probabilities", "anomaly": "scores"}
_OUTPUT_TYPE: Final[dict[str, str]] = {
    "segment": "tensor(int64)",
    "churn": "tensor(float)",
    "anomaly": "tensor(float)",
}
_POINTER: Final = "current.json"
# Model names as protocol.ModelManifest accepts them; anything else in root is not ours.
_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_TMP_PREFIX: Final = ".tmp-"
# Calibrated probabilities are float32: allow rounding, not mass outside [0, 1].
_PROB_TOLERANCE: Final = 1e-3


@dataclass(frozen=True, slots=True)
class ModelFailure:
    """The last refusal of a model name: why, and which version (for the device status)."""

    reason: str
    ref: str
    message: str


class _Runner:
    """One loaded, verified model: its session and pre-allocated single-row input."""

    __slots__ = (
        "_buf",
        "_feed",
        "_lock",
        "_outs",
        "builtin",
        "kind",
        "manifest",
        "ref",
        "session",
        "threshold",
        "width",
    )

    def __init__(self, manifest: ModelManifest, session: ort.InferenceSession, builtin: bool):
        self.manifest = manifest
        self.kind: ModelKind = manifest.kind
        self.ref = manifest.ref
        self.builtin = builtin
        self.session = session
        self.threshold = float(manifest.threshold)
        self.width = len(manifest.inputs)
        # Built once: the per-call cost is filling one row and onnxruntime's own work.
        self._buf = np.zeros((1, self.width), dtype=np.float32)
        self._feed = {_INPUT: self._buf}
        self._outs = [_OUTPUT[manifest.kind]]
        # The shared input row makes a call a critical section; uncontended it costs
        # far less than the inference, and it keeps callers from other threads safe.
        self._lock = threading.Lock()

    def run1(self, vector: Sequence[float]) -> Any:
        """The model's output for one row (shape ``[1, ...]``)."""
        if len(vector) != self.width:
            # Checked explicitly: numpy would silently broadcast a 1-element vector.
            raise ModelError(
                f"{self.ref} takes {self.width} features, got {len(vector)}",
                reason="bad_features",
            )
        with self._lock:
            try:
                self._buf[0] = vector
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"{self.ref}: bad feature vector: {exc}", reason="bad_features"
                ) from exc
            return self.session.run(self._outs, self._feed)[0]

    def run_many(self, rows: Sequence[Sequence[float]]) -> Any:
        """The model's output for a batch of rows."""
        if not len(rows):
            batch = np.zeros((0, self.width), dtype=np.float32)
        else:
            try:
                batch = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"{self.ref}: bad feature rows: {exc}", reason="bad_features"
                ) from exc
            if batch.shape[1] != self.width:
                raise ModelError(
                    f"{self.ref} takes {self.width} features, got {batch.shape[1]}",
                    reason="bad_features",
                )
        return self.session.run(self._outs, {_INPUT: batch})[0]


@dataclass(frozen=True, slots=True)
class _Pointer:
    version: int
    previous: int | None


class ModelStore:
    """Verified models of one device: install, roll back, serve predictions.

    ``hub_keys`` (kid -> key) are the keys a manifest may be signed with; ``builtin`` is a
    directory of default models (flat: ``<name>.onnx`` + ``<name>.manifest.json``), used
    for any kind without an installed model; they are part of the installed code, so only
    their hashes are checked, not their signatures. Only models for ``product`` (or
    anomaly models for product ``"any"``) are used.

    Predictions return None when no model of that kind is loaded. Install and rollback
    may run in another thread than predictions (e.g. ``asyncio.to_thread``).
    """

    def __init__(
        self,
        root: Path,
        product: str,
        hub_keys: dict[str, VerifyKey],
        *,
        builtin: Path | None = None,
    ) -> None:
        try:
            self._features = feature_names(product)
        except SchemaError as exc:
            raise ModelError(str(exc), reason="unknown_product") from exc
        self.root = Path(root)
        self.product = product
        self.builtin = builtin
        self._keys = dict(hub_keys)
        self._lock = threading.RLock()
        self._serving: dict[str, _Runner] = {}
        self._failures: dict[str, ModelFailure] = {}
        self._kinds: dict[str, str] = {}  # installed name -> kind (to retire replaced names)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(
                f"cannot create model directory {self.root}: {exc}", reason="io"
            ) from exc
        with self._lock:
            self._load_all()

    # -- inference ---------------------------------------------------------------------
    def segment(self, vector: Sequence[float]) -> tuple[int, str] | None:
        """(segment label, model ref) of one customer feature vector, or None."""
        runner = self._serving.get("segment")
        if runner is None:
            return None
        return int(runner.run1(vector)[0]), runner.ref

    def churn(self, vector: Sequence[float]) -> tuple[float, str] | None:
        """(P(churn within horizon_days), model ref) of one feature vector, or None."""
        runner = self._serving.get("churn")
        if runner is None:
            return None
        return float(runner.run1(vector)[0, 1]), runner.ref

    def anomaly(self, features: Sequence[float]) -> tuple[float, bool, str] | None:
        """(score, flagged = score >= threshold, model ref) of one reading, or None."""
        runner = self._serving.get("anomaly")
        if runner is None:
            return None
        score = float(runner.run1(features)[0, 0])
        return score, score >= runner.threshold, runner.ref

    def segment_many(self, rows: Sequence[Sequence[float]]) -> tuple[list[int], str] | None:
        """Batch :meth:`segment`: (labels, model ref), or None."""
        runner = self._serving.get("segment")
        if runner is None:
            return None
        return [int(v) for v in runner.run_many(rows)], runner.ref

    def churn_many(self, rows: Sequence[Sequence[float]]) -> tuple[list[float], str] | None:
        """Batch :meth:`churn`: (probabilities, model ref), or None."""
        runner = self._serving.get("churn")
        if runner is None:
            return None
        return [float(v) for v in runner.run_many(rows)[:, 1]], runner.ref

    def anomaly_many(
        self, rows: Sequence[Sequence[float]]
    ) -> tuple[list[float], list[bool], str] | None:
        """Batch :meth:`anomaly`: (scores, flags, model ref), or None."""
        runner = self._serving.get("anomaly")
        if runner is None:
            return None
        scores = [float(v) for v in runner.run_many(rows)[:, 0]]
        return scores, [s >= runner.threshold for s in scores], runner.ref

    # -- status ------------------------------------------------------------------------
    def running(self) -> dict[str, str]:
        """Model name -> ``name@version`` of every model serving now (builtins included)."""
        return {r.manifest.name: r.ref for r in self._serving.values()}

    def failures(self) -> dict[str, ModelFailure]:
        """Last refusal per model name (install, start-up load or rollback); cleared when a
        version of that name is later installed or rolled back to successfully."""
        return dict(self._failures)

    def manifest(self, kind: ModelKind) -> ModelManifest | None:
        """The manifest of the model serving ``kind`` (threshold, horizon_days, ...)."""
        runner = self._serving.get(kind)
        return None if runner is None else runner.manifest

    def is_builtin(self, kind: ModelKind) -> bool:
        """Whether ``kind`` is served by a built-in default (False if not served at all)."""
        runner = self._serving.get(kind)
        return runner is not None and runner.builtin

    # -- install / rollback ------------------------------------------------------------
    def install(self, manifest_json: bytes, onnx_bytes: bytes) -> ModelManifest:
        """Verify, test and durably install a model, then serve it.

        Raises :class:`ModelRejected` (``.reason``: ``malformed``, ``too_large``,
        ``unknown_key``, ``signature``, ``hash_mismatch``, ``wrong_product``,
        ``incompatible_inputs``, ``kind_changed``, ``downgrade``, ``load_failed``,
        ``bad_io``, ``smoke_failed``, ``io``) and leaves the running model untouched.
        Re-installing the version that already serves (same hash) is a no-op.
        """
        manifest = _parse(manifest_json)
        with self._lock, self._recording(manifest):
            current = self._serving_named(manifest.name)
            _check_size(manifest, len(onnx_bytes))
            self._check_manifest(manifest, onnx_bytes, signed=True)
            if _same(current, manifest):
                return manifest  # a redelivery of what already serves
            self._check_upgrade(manifest, current)
            runner = _load(manifest, onnx_bytes, builtin=False)
            # Only an installed version can be rolled back to; a builtin stays the
            # fallback anyway.
            previous = None if current is None or current.builtin else current.manifest.version
            self._commit(manifest, onnx_bytes, previous)
            self._failures.pop(manifest.name, None)
            self._activate(runner)
            self._retire_others(manifest)
            log.info("model %s installed (previous version: %s)", manifest.ref, previous)
            return manifest

    def rollback(self, name: str) -> ModelManifest:
        """Serve the previous installed version of ``name`` again (durably).

        Raises ModelError ``unknown_model`` / ``no_previous``, or ModelRejected when the
        previous version no longer verifies or loads (the running model stays).
        """
        with self._lock:
            name_dir = self.root / name
            pointer = _read_pointer(name_dir) if _is_name(name) else None
            if pointer is None:
                raise ModelError(f"no installed model named {name!r}", reason="unknown_model")
            current = self._serving_named(name)
            if (
                current is None
                or current.builtin
                or current.manifest.version != pointer.version
                or pointer.previous is None
            ):
                raise ModelError(
                    f"{name} has no previous version to roll back to", reason="no_previous"
                )
            try:
                runner = self._load_version(name, pointer.previous)
                self._write_pointer(name_dir, _Pointer(pointer.previous, None))
            except ModelRejected as exc:
                self._failures[name] = ModelFailure(
                    exc.reason, f"{name}@{pointer.previous}", str(exc)
                )
                log.warning("rollback of %s refused (%s): %s", name, exc.reason, exc)
                raise
            self._failures.pop(name, None)
            self._activate(runner)
            _remove(name_dir / str(pointer.version))
            log.info("model %s rolled back to %s", current.ref, runner.ref)
            return runner.manifest

    def admit(self, manifest_json: bytes) -> ModelManifest:
        """The checks :meth:`install` makes that need no model file (signature, size,
        product, inputs, kind, no downgrade): run them before downloading a file.

        Raises :class:`ModelRejected` and records the refusal like :meth:`install`.
        """
        manifest = _parse(manifest_json)
        with self._lock, self._recording(manifest):
            current = self._serving_named(manifest.name)
            _check_size(manifest, manifest.size)
            self._check_claims(manifest, signed=True)
            if not _same(current, manifest):
                self._check_upgrade(manifest, current)
        return manifest

    def previous(self, name: str) -> int | None:
        """The installed version :meth:`rollback` would return ``name`` to, if any."""
        with self._lock:
            current = self._serving_named(name)
            pointer = _read_pointer(self.root / name) if _is_name(name) else None
            if current is None or current.builtin or pointer is None:
                return None
            return pointer.previous if pointer.version == current.manifest.version else None

    def note_failure(self, manifest: ModelManifest, reason: str, message: str) -> None:
        """Record a failure outside the store (e.g. the download) for the device status."""
        with self._lock:
            self._failures[manifest.name] = ModelFailure(reason, manifest.ref, message)

    # -- internals ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _recording(self, manifest: ModelManifest) -> Iterator[None]:
        """Keep a refusal of ``manifest`` for the device status (and log it)."""
        try:
            yield
        except ModelRejected as exc:
            self._failures[manifest.name] = ModelFailure(exc.reason, manifest.ref, str(exc))
            log.warning("model %s refused (%s): %s", manifest.ref, exc.reason, exc)
            raise

    def _check_upgrade(self, manifest: ModelManifest, current: _Runner | None) -> None:
        known_kind = self._kinds.get(manifest.name) or (current.kind if current else None)
        if known_kind is not None and known_kind != manifest.kind:
            raise _reject(
                "kind_changed",
                manifest,
                f"{manifest.name} is a {known_kind} model, not {manifest.kind}",
            )
        if current is not None and manifest.version <= current.manifest.version:
            raise _reject(
                "downgrade",
                manifest,
                f"{manifest.ref} is not newer than the running {current.ref} "
                "(use rollback to go back)",
            )

    def _serving_named(self, name: str) -> _Runner | None:
        for runner in self._serving.values():
            if runner.manifest.name == name:
                return runner
        return None

    def _activate(self, runner: _Runner) -> None:
        # Copy-on-write: readers do one dict lookup on whichever dict they got.
        serving = dict(self._serving)
        serving[runner.kind] = runner
        self._serving = serving
        if not runner.builtin:
            self._kinds[runner.manifest.name] = runner.kind

    def _expected_inputs(self, kind: str) -> tuple[str, ...]:
        return ANOMALY_FEATURES if kind == "anomaly" else self._features

    def _product_ok(self, manifest: ModelManifest) -> bool:
        return manifest.product == self.product or (
            manifest.kind == "anomaly" and manifest.product == "any"
        )

    def _check_manifest(self, manifest: ModelManifest, data: bytes, *, signed: bool) -> None:
        """Everything checkable without running the model."""
        self._check_claims(manifest, signed=signed)
        try:
            manifest.check_file(data)
        except SignatureError as exc:
            raise _reject("hash_mismatch", manifest, str(exc)) from exc

    def _check_claims(self, manifest: ModelManifest, *, signed: bool) -> None:
        """What the manifest says, checked without its file."""
        if signed:
            try:
                manifest.verify(self._keys)
            except SignatureError as exc:
                raise _reject(exc.reason, manifest, str(exc)) from exc
        if not self._product_ok(manifest):
            raise _reject(
                "wrong_product",
                manifest,
                f"{manifest.ref} is for product {manifest.product!r}, this device is "
                f"{self.product!r}",
            )
        expected = self._expected_inputs(manifest.kind)
        if manifest.inputs != expected:
            raise _reject(
                "incompatible_inputs",
                manifest,
                f"{manifest.ref} expects inputs {list(manifest.inputs)}, this agent computes "
                f"{list(expected)}",
            )
        if not math.isfinite(manifest.threshold):
            raise _reject("malformed", manifest, f"{manifest.ref} threshold is not finite")

    def _load_version(self, name: str, version: int) -> _Runner:
        """Load and fully re-verify an installed version (its files may have rotted)."""
        directory = self.root / name / str(version)
        ref = f"{name}@{version}"
        try:
            manifest_json = (directory / "manifest.json").read_bytes()
            data = (directory / "model.onnx").read_bytes()
        except OSError as exc:
            raise ModelRejected(f"cannot read {ref}: {exc}", reason="missing", ref=ref) from exc
        try:
            manifest = ModelManifest.from_json(manifest_json)
        except SchemaError as exc:
            raise ModelRejected(f"{ref}: {exc}", reason="malformed", ref=ref) from exc
        if manifest.name != name or manifest.version != version:
            raise _reject("malformed", manifest, f"{directory} holds {manifest.ref}, not {ref}")
        # Known even if the model fails below: a later install of this kind retires it.
        self._kinds[name] = manifest.kind
        self._check_manifest(manifest, data, signed=True)
        return _load(manifest, data, builtin=False)

    def _load_all(self) -> None:
        # Every installed name first; per kind the most recently committed one serves
        # (there are two only after a crash between a replacement and the retirement).
        found: dict[str, list[tuple[int, str, _Runner]]] = {}
        for name_dir in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not (name_dir.is_dir() and _is_name(name_dir.name)):
                continue
            _clean_tmp(name_dir)
            runner = self._load_name(name_dir)
            if runner is not None:
                mtime = (name_dir / _POINTER).stat().st_mtime_ns
                found.setdefault(runner.kind, []).append((mtime, name_dir.name, runner))
        for candidates in found.values():
            self._activate(max(candidates, key=lambda c: (c[0], c[1]))[2])
        if self.builtin is not None:
            self._load_builtins(self.builtin)
        log.info("models serving: %s", self.running() or "none")

    def _load_name(self, name_dir: Path) -> _Runner | None:
        name = name_dir.name
        try:
            pointer = _read_pointer(name_dir)
        except ModelRejected as exc:
            self._failures[name] = ModelFailure(exc.reason, name, str(exc))
            log.error("model %s: %s", name, exc)
            return None
        if pointer is None:
            return None  # a first install that crashed before its commit: nothing to load
        for version in (pointer.version, pointer.previous):
            if version is None:
                continue
            try:
                runner = self._load_version(name, version)
            except ModelRejected as exc:
                # The newest refusal is what the status shows; the current version's
                # failure is the interesting one, so do not let the previous' overwrite it.
                self._failures.setdefault(name, ModelFailure(exc.reason, exc.ref, str(exc)))
                log.error("model %s not loaded (%s): %s", exc.ref, exc.reason, exc)
                continue
            self._kinds[name] = runner.kind
            return runner
        return None

    def _load_builtins(self, directory: Path) -> None:
        try:
            files = sorted(directory.glob("*.manifest.json"))
        except OSError as exc:
            log.error("cannot list built-in models in %s: %s", directory, exc)
            return
        for path in files:
            name = path.name.removesuffix(".manifest.json")
            try:
                manifest = ModelManifest.from_json(path.read_bytes())
            except (OSError, SchemaError) as exc:
                self._failures[name] = ModelFailure("malformed", name, str(exc))
                log.error("built-in model %s unreadable: %s", path, exc)
                continue
            if not self._product_ok(manifest) or manifest.kind in self._serving:
                continue
            try:
                data = (directory / f"{name}.onnx").read_bytes()
            except OSError as exc:
                self._failures[name] = ModelFailure("missing", manifest.ref, str(exc))
                log.error("built-in model %s unreadable: %s", path, exc)
                continue
            try:
                # Shipped with the code, so trusted like the code: no signature check;
                # the hash still catches a damaged install.
                self._check_manifest(manifest, data, signed=False)
                runner = _load(manifest, data, builtin=True)
            except ModelRejected as exc:
                self._failures[manifest.name] = ModelFailure(exc.reason, manifest.ref, str(exc))
                log.error("built-in model %s refused (%s): %s", manifest.ref, exc.reason, exc)
                continue
            self._activate(runner)

    def _commit(self, manifest: ModelManifest, data: bytes, previous: int | None) -> None:
        """Write the version directory, then flip the pointer: durable and atomic."""
        name_dir = self.root / manifest.name
        tmp = name_dir / f"{_TMP_PREFIX}{manifest.version}-{uuid.uuid4().hex[:8]}"
        final = name_dir / str(manifest.version)
        try:
            if not name_dir.exists():
                name_dir.mkdir()
                _fsync_dir(self.root)
            tmp.mkdir()
            _write_synced(tmp / "model.onnx", data)
            _write_synced(tmp / "manifest.json", (manifest.to_json() + "\n").encode())
            _fsync_dir(tmp)
            # A directory of this version can only be a leftover nothing points at (or a
            # current version that failed to load and is being replaced): never what
            # serves, never the previous one (both are older).
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            _fsync_dir(name_dir)
            self._write_pointer(name_dir, _Pointer(manifest.version, previous))
        except OSError as exc:
            _remove(tmp)
            raise _reject("io", manifest, f"cannot write {manifest.ref}: {exc}") from exc
        keep = {str(manifest.version), str(previous), _POINTER}
        for entry in name_dir.iterdir():
            if entry.name not in keep:
                _remove(entry)

    def _write_pointer(self, name_dir: Path, pointer: _Pointer) -> None:
        body = json.dumps({"version": pointer.version, "previous": pointer.previous})
        tmp = name_dir / f"{_TMP_PREFIX}{_POINTER}-{uuid.uuid4().hex[:8]}"
        try:
            _write_synced(tmp, body.encode())
            os.replace(tmp, name_dir / _POINTER)
            _fsync_dir(name_dir)
        except OSError as exc:
            _remove(tmp)
            raise ModelRejected(
                f"cannot write {name_dir / _POINTER}: {exc}",
                reason="io",
                ref=f"{name_dir.name}@{pointer.version}",
            ) from exc

    def _retire_others(self, manifest: ModelManifest) -> None:
        # One installed model per kind: a new name for a kind replaces the old name.
        for name, kind in list(self._kinds.items()):
            if kind == manifest.kind and name != manifest.name:
                log.info("model %s retired (replaced by %s)", name, manifest.ref)
                del self._kinds[name]
                self._failures.pop(name, None)
                _remove(self.root / name)


def _parse(manifest_json: bytes) -> ModelManifest:
    try:
        return ModelManifest.from_json(manifest_json)
    except SchemaError as exc:
        raise ModelRejected(f"model manifest refused: {exc}", reason="malformed") from exc


def _check_size(manifest: ModelManifest, size: int) -> None:
    if size > MAX_MODEL_BYTES:
        raise _reject("too_large", manifest, f"model file is {size} bytes, limit {MAX_MODEL_BYTES}")


def _same(current: _Runner | None, manifest: ModelManifest) -> bool:
    return (
        current is not None
        and current.manifest.version == manifest.version
        and current.manifest.sha256 == manifest.sha256
    )


def _reject(reason: str, manifest: ModelManifest, message: str) -> ModelRejected:
    return ModelRejected(
        f"model {manifest.ref} refused: {message}", reason=reason, ref=manifest.ref
    )


def _is_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def _session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread: predictions are one row at a time on a small CPU shared with the
    # agent; thread pools would only add wake-up latency and memory.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _load(manifest: ModelManifest, data: bytes, *, builtin: bool) -> _Runner:
    """A fresh session for ``data``, checked against the I/O conventions and smoke-run."""
    try:
        session = _session(data)
    except Exception as exc:
        raise _reject("load_failed", manifest, f"onnxruntime cannot load it: {exc}") from exc
    _check_io(manifest, session)
    runner = _Runner(manifest, session, builtin)
    _smoke(runner)
    return runner


def _check_io(manifest: ModelManifest, session: ort.InferenceSession) -> None:
    inputs = session.get_inputs()
    width = len(manifest.inputs)
    if len(inputs) != 1 or inputs[0].name != _INPUT:
        names = [i.name for i in inputs]
        raise _reject("bad_io", manifest, f"inputs are {names}, expected exactly [{_INPUT!r}]")
    shape = list(inputs[0].shape)
    batch_ok = len(shape) == 2 and not isinstance(shape[0], int)
    if inputs[0].type != "tensor(float)" or not batch_ok or shape[1] != width:
        raise _reject(
            "bad_io",
            manifest,
            f"input {_INPUT!r} is {inputs[0].type} {shape}, expected tensor(float) [N, {width}]",
        )
    wanted, wanted_type = _OUTPUT[manifest.kind], _OUTPUT_TYPE[manifest.kind]
    outputs = {o.name: o.type for o in session.get_outputs()}
    if outputs.get(wanted) != wanted_type:
        raise _reject(
            "bad_io",
            manifest,
            f"a {manifest.kind} model needs output {wanted!r} ({wanted_type}), has {outputs}",
        )


def _smoke(runner: _Runner) -> None:
    """Run a row of zeros and a row of ones, as a batch and one by one; check the outputs."""
    manifest = runner.manifest
    rows = [[0.0] * runner.width, [1.0] * runner.width]
    try:
        outputs = [runner.run_many(rows), runner.run1(rows[0]), runner.run1(rows[1])]
    except Exception as exc:
        raise _reject("smoke_failed", manifest, f"smoke inference failed: {exc}") from exc
    for out, n in zip(outputs, (2, 1, 1), strict=True):
        problem = _output_problem(manifest.kind, np.asarray(out), n)
        if problem:
            raise _reject("smoke_failed", manifest, f"smoke inference: {problem}")


def _output_problem(kind: str, out: Any, n: int) -> str:
    if kind == "segment":
        if out.shape != (n,) or out.dtype != np.int64:
            return f"label is {out.dtype} {out.shape}, expected int64 ({n},)"
        return ""
    expected = (n, 2) if kind == "churn" else (n, 1)
    if out.shape != expected or out.dtype != np.float32:
        return f"{_OUTPUT[kind]} is {out.dtype} {out.shape}, expected float32 {expected}"
    if not np.all(np.isfinite(out)):
        return f"{_OUTPUT[kind]} is not finite: {out.tolist()}"
    if kind == "churn":
        low, high = -_PROB_TOLERANCE, 1 + _PROB_TOLERANCE
        if np.any(out < low) or np.any(out > high):
            return f"probabilities outside [0, 1]: {out.tolist()}"
        if not np.allclose(out.sum(axis=1), 1.0, atol=_PROB_TOLERANCE):
            return f"probabilities do not sum to 1: {out.tolist()}"
    return ""


def _read_pointer(name_dir: Path) -> _Pointer | None:
    """The committed pointer of a name, None if there is none; ModelRejected if corrupt."""
    path = name_dir / _POINTER
    try:
        raw = json.loads(path.read_bytes())
        version, previous = raw["version"], raw["previous"]
        if not isinstance(version, int) or not (previous is None or isinstance(previous, int)):
            raise TypeError("version and previous must be integers")
        return _Pointer(version, previous)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelRejected(
            f"{path} is unreadable: {exc}", reason="corrupt_pointer", ref=name_dir.name
        ) from exc


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # A rename or a new entry is durable only once the directory itself is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean_tmp(name_dir: Path) -> None:
    for entry in name_dir.iterdir():
        if entry.name.startswith(_TMP_PREFIX):
            _remove(entry)


def _remove(path: Path) -> None:
    """Best-effort removal of garbage: a leftover costs disk, never correctness."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)
