"""The on-device model runtime: verified ONNX models, installed durably, served fast.

A model is an ONNX file plus a hub-signed :class:`protocol.ModelManifest`. The store
serves at most one model per kind (segment, churn, anomaly, micro); installed models win over
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

This module is the store; the checks made before a model is loaded are
edge_agent._model_admission, a loaded model and its run-time checks
edge_agent._model_runner, the files edge_agent._model_files, and onnxruntime (its C API,
without numpy) edge_agent._ort and edge_agent._ort_session.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from protocol import (
    ModelKind,
    ModelManifest,
    SchemaError,
    VerifyKey,
    feature_names,
)

from ._errors import ModelError, ModelRejected
from ._model_admission import Admission, check_size, parse_manifest, same_model
from ._model_files import (
    POINTER,
    Pointer,
    clean_tmp,
    commit,
    is_name,
    read_pointer,
    remove,
    write_pointer,
)
from ._model_runner import Runner, load, reject
from ._ort import runtime
from ._pages import release_code_pages

__all__ = ["BUILTIN_MODELS", "ModelFailure", "ModelStore"]

log = logging.getLogger("edge_agent.models")

#: Where the package's default models live (``<name>.onnx`` + ``<name>.manifest.json``).
BUILTIN_MODELS: Final = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True, slots=True)
class ModelFailure:
    """The last refusal of a model name: why, and which version (for the device status)."""

    reason: str
    ref: str
    message: str


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
        self._admission = Admission(product, self._features, hub_keys)
        self._lock = threading.RLock()
        self._serving: dict[str, Runner] = {}
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

    def micro(self, vector: Sequence[float], segment: int) -> tuple[int, str] | None:
        """(micro-segment inside ``segment``, model ref) of one feature vector, or None.

        ``segment`` is what :meth:`segment` answered for the same vector: the micro model
        splits each segment on its own.
        """
        runner = self._serving.get("micro")
        if runner is None:
            return None
        return int(runner.run1([*vector, float(segment)])[0]), runner.ref

    def churn(self, vector: Sequence[float]) -> tuple[float, str] | None:
        """(P(churn within horizon_days), model ref) of one feature vector, or None."""
        runner = self._serving.get("churn")
        if runner is None:
            return None
        return float(runner.run1(vector)[1]), runner.ref

    def anomaly(self, features: Sequence[float]) -> tuple[float, bool, str] | None:
        """(score, flagged = score >= threshold, model ref) of one reading, or None."""
        runner = self._serving.get("anomaly")
        if runner is None:
            return None
        score = float(runner.run1(features)[0])
        return score, score >= runner.threshold, runner.ref

    def segment_many(self, rows: Sequence[Sequence[float]]) -> tuple[list[int], str] | None:
        """Batch :meth:`segment`: (labels, model ref), or None."""
        runner = self._serving.get("segment")
        if runner is None:
            return None
        return [int(v) for v in runner.run_many(rows).values], runner.ref

    def churn_many(self, rows: Sequence[Sequence[float]]) -> tuple[list[float], str] | None:
        """Batch :meth:`churn`: (probabilities, model ref), or None."""
        runner = self._serving.get("churn")
        if runner is None:
            return None
        return [float(v) for v in runner.run_many(rows).values[1::2]], runner.ref

    def anomaly_many(
        self, rows: Sequence[Sequence[float]]
    ) -> tuple[list[float], list[bool], str] | None:
        """Batch :meth:`anomaly`: (scores, flags, model ref), or None."""
        runner = self._serving.get("anomaly")
        if runner is None:
            return None
        scores = [float(v) for v in runner.run_many(rows).values]
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
        manifest = parse_manifest(manifest_json)
        with self._lock, self._recording(manifest):
            current = self._serving_named(manifest.name)
            check_size(manifest, len(onnx_bytes))
            self._admission.check_manifest(manifest, onnx_bytes, signed=True)
            if same_model(current, manifest):
                return manifest  # a redelivery of what already serves
            self._check_upgrade(manifest, current)
            runner = load(manifest, onnx_bytes, builtin=False)
            # Only an installed version can be rolled back to; a builtin stays the
            # fallback anyway.
            previous = None if current is None or current.builtin else current.manifest.version
            commit(self.root, manifest, onnx_bytes, previous)
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
            pointer = read_pointer(name_dir) if is_name(name) else None
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
                write_pointer(name_dir, Pointer(pointer.previous, None))
            except ModelRejected as exc:
                self._failures[name] = ModelFailure(
                    exc.reason, f"{name}@{pointer.previous}", str(exc)
                )
                log.warning("rollback of %s refused (%s): %s", name, exc.reason, exc)
                raise
            self._failures.pop(name, None)
            self._activate(runner)
            remove(name_dir / str(pointer.version))
            log.info("model %s rolled back to %s", current.ref, runner.ref)
            return runner.manifest

    def admit(self, manifest_json: bytes) -> ModelManifest:
        """The checks :meth:`install` makes that need no model file (signature, size,
        product, inputs, kind, no downgrade): run them before downloading a file.

        Raises :class:`ModelRejected` and records the refusal like :meth:`install`.
        """
        manifest = parse_manifest(manifest_json)
        with self._lock, self._recording(manifest):
            current = self._serving_named(manifest.name)
            check_size(manifest, manifest.size)
            self._admission.check_claims(manifest, signed=True)
            if not same_model(current, manifest):
                self._check_upgrade(manifest, current)
        return manifest

    def previous(self, name: str) -> int | None:
        """The installed version :meth:`rollback` would return ``name`` to, if any."""
        with self._lock:
            current = self._serving_named(name)
            pointer = read_pointer(self.root / name) if is_name(name) else None
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

    def _check_upgrade(self, manifest: ModelManifest, current: Runner | None) -> None:
        known_kind = self._kinds.get(manifest.name) or (current.kind if current else None)
        if known_kind is not None and known_kind != manifest.kind:
            raise reject(
                "kind_changed",
                manifest,
                f"{manifest.name} is a {known_kind} model, not {manifest.kind}",
            )
        if current is not None and manifest.version <= current.manifest.version:
            raise reject(
                "downgrade",
                manifest,
                f"{manifest.ref} is not newer than the running {current.ref} "
                "(use rollback to go back)",
            )

    def _serving_named(self, name: str) -> Runner | None:
        for runner in self._serving.values():
            if runner.manifest.name == name:
                return runner
        return None

    def _activate(self, runner: Runner) -> None:
        # Loading ran the runtime's registration code, which inference hardly needs: the
        # kernel may have those pages back (edge_agent._pages), after each model so that
        # they are never all resident at once.
        release_code_pages(runtime().library)
        # Copy-on-write: readers do one dict lookup on whichever dict they got.
        serving = dict(self._serving)
        serving[runner.kind] = runner
        self._serving = serving
        if not runner.builtin:
            self._kinds[runner.manifest.name] = runner.kind

    def _load_version(self, name: str, version: int) -> Runner:
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
            raise reject("malformed", manifest, f"{directory} holds {manifest.ref}, not {ref}")
        # Known even if the model fails below: a later install of this kind retires it.
        self._kinds[name] = manifest.kind
        self._admission.check_manifest(manifest, data, signed=True)
        return load(manifest, data, builtin=False)

    def _load_all(self) -> None:
        # Every installed name first; per kind the most recently committed one serves
        # (there are two only after a crash between a replacement and the retirement).
        found: dict[str, list[tuple[int, str, Runner]]] = {}
        for name_dir in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not (name_dir.is_dir() and is_name(name_dir.name)):
                continue
            clean_tmp(name_dir)
            runner = self._load_name(name_dir)
            if runner is not None:
                mtime = (name_dir / POINTER).stat().st_mtime_ns
                found.setdefault(runner.kind, []).append((mtime, name_dir.name, runner))
        for candidates in found.values():
            self._activate(max(candidates, key=lambda c: (c[0], c[1]))[2])
        if self.builtin is not None:
            self._load_builtins(self.builtin)
        log.info("models serving: %s", self.running() or "none")

    def _load_name(self, name_dir: Path) -> Runner | None:
        name = name_dir.name
        try:
            pointer = read_pointer(name_dir)
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
            if not self._admission.product_ok(manifest) or manifest.kind in self._serving:
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
                self._admission.check_manifest(manifest, data, signed=False)
                runner = load(manifest, data, builtin=True)
            except ModelRejected as exc:
                self._failures[manifest.name] = ModelFailure(exc.reason, manifest.ref, str(exc))
                log.error("built-in model %s refused (%s): %s", manifest.ref, exc.reason, exc)
                continue
            self._activate(runner)

    def _retire_others(self, manifest: ModelManifest) -> None:
        # One installed model per kind: a new name for a kind replaces the old name.
        for name, kind in list(self._kinds.items()):
            if kind == manifest.kind and name != manifest.name:
                log.info("model %s retired (replaced by %s)", name, manifest.ref)
                del self._kinds[name]
                self._failures.pop(name, None)
                remove(self.root / name)
