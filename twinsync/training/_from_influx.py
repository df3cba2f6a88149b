"""``twinsync hub train --influx``: segment models from the twins the hub already holds.

Agents write each customer's features as ``<product>.f_<feature>`` twin fields; the
latest vector of every (twin, device) is one training row. Segments need no labels, so
they can be learnt from a real fleet: k by resampling stability (as in simulation), a
seeded 80/20 split, and the held-out part scored by silhouette and by how well the
trained model's segments agree with a clustering of the held-out rows alone. Churn and
anomaly models need labels a live fleet does not have; they stay as trained on
firmware_sim (``--sim``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from cloud_hub import HubConfig
from cloud_hub.store import MEASUREMENT_OF, InfluxStore, quote_ident, quote_str
from protocol import FEATURE_FIELDS, PRODUCTS, SigningKey, feature_names

from ._artefacts import write_model, write_report
from ._fit import robust_scaler
from ._onnx import run
from ._segments import choose_k, fit_segment, segment_columns, stability

__all__ = ["fetch_features", "train_segments", "twin_features"]

#: fewer rows than this for a product and it is skipped (nothing to learn from)
MIN_ROWS = 20


async def twin_features(store: InfluxStore, brand: str, product: str) -> list[list[float]]:
    """The latest complete feature vector of every (twin, device) of ``product``."""
    fields = [FEATURE_FIELDS[(product, n)] for n in feature_names(product)]
    select = ", ".join(f"last({quote_ident(f)}) AS {quote_ident(f)}" for f in fields)
    # Features are profile-class fields: they live in that class's measurement.
    measurement = quote_ident(MEASUREMENT_OF[fields[0]])
    results = await store.query(
        f'SELECT {select} FROM {measurement} WHERE "brand" = {quote_str(brand)} '
        'GROUP BY "twin", "device"'
    )
    rows = []
    for series in results[0].get("series", []) or []:
        columns, values = series["columns"], series["values"][0]
        row = dict(zip(columns, values, strict=True))
        vector = [row.get(f) for f in fields]
        if all(v is not None for v in vector):
            rows.append([float(v) for v in vector])  # type: ignore[arg-type]
    # Influx returns series in tag order, i.e. by pseudonym: sort by content instead, so
    # that the split (and the model) does not change when the pseudonym key rotates.
    rows.sort()
    return rows


async def fetch_features(config: HubConfig, brand: str) -> dict[str, list[list[float]]]:
    """Every product's feature rows of ``brand`` from the configured InfluxDB."""
    async with InfluxStore(config.influx) as store:
        return {p: await twin_features(store, brand, p) for p in sorted(PRODUCTS)}


def train_segments(
    data: dict[str, list[list[float]]],
    out: Path,
    key: SigningKey | None,
    version: int,
    *,
    brand: str,
    seed: int = 1,
) -> dict[str, Any]:
    """Fit one segment model per product; write ONNX, manifests and report.json."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    usable = {p: np.asarray(x, np.float32) for p, x in data.items() if len(x) >= MIN_ROWS}
    report: dict[str, Any] = {"brand": brand, "models": {}, "skipped": {}}
    for p, x in data.items():
        if p not in usable:
            report["skipped"][p] = f"{len(x)} complete feature rows (< {MIN_ROWS})"
    if usable:
        _fit_all(usable, out, key, version, seed, report)
    report["seconds"] = time.perf_counter() - started
    write_report(out, report)
    return report


def _fit_all(
    usable: dict[str, np.ndarray],
    out: Path,
    key: SigningKey | None,
    version: int,
    seed: int,
    report: dict[str, Any],
) -> None:
    rng = np.random.default_rng(seed)
    splits = {}
    for p, x in usable.items():
        order = rng.permutation(len(x))
        cut = int(0.8 * len(x))
        splits[p] = (x[order[:cut]], x[order[cut:]])
    curves = {p: stability(_scaled(p, train), seed=seed) for p, (train, _) in splits.items()}
    k = choose_k(list(curves.values()))
    report["segments"] = {"k": k, "stability": curves}
    for p, (train, held) in splits.items():
        columns = segment_columns(p)
        fitted = fit_segment(train.tolist(), k, p, columns, seed=seed)
        labels = run(fitted.onnx, "label", held.tolist())
        every = np.concatenate([train, held])[:, columns]
        scaler = robust_scaler(every, [feature_names(p)[i] for i in columns])
        if len(set(labels.tolist())) > 1 and len(held) > k:
            scaled = scaler.transform(held[:, columns])
            fitted.metrics["heldout_silhouette"] = float(silhouette_score(scaled, labels))
            # Agreement with a clustering fitted on every row (held-out ones included): a
            # model that generalises puts the held-out customers where that one does.
            reference = KMeans(k, n_init=10, random_state=seed + 1).fit(scaler.transform(every))
            own = reference.predict(scaled)
            fitted.metrics["heldout_agreement"] = float(adjusted_rand_score(own, labels))
        fitted.metrics["rows"] = float(len(train) + len(held))
        manifest = write_model(out, "segment", p, fitted, feature_names(p), key, version)
        report["models"][manifest.name] = {"ref": manifest.ref, **fitted.metrics}


def _scaled(product: str, x: np.ndarray) -> np.ndarray:
    """``x``'s segment columns, robustly scaled (as the segment model scales them)."""
    columns = segment_columns(product)
    names = [feature_names(product)[i] for i in columns]
    scaled: np.ndarray = robust_scaler(x[:, columns], names).transform(x[:, columns])
    return scaled
