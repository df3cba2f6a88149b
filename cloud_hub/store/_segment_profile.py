"""Segment profiles: per segment, its size and the features that set it apart.

Read from the twin query index (each twin's current ``<product>.segment``, the model ref
written with it, and its feature values ``<product>.f_<name>``), aggregated in SQL so
the hub holds sums, never every twin's row. A *population* is the twins one model
version scored (segment numbers of two model versions are not the same segments).

For each feature, the **standardised mean difference** of a segment is (segment mean -
population mean) / population standard deviation, the spread never taken below the
feature's floor (``protocol.feature_floor``: a feature nearly constant in a fleet cannot
turn noise into tens of deviations). Features are ranked by its size; only those of at
least :data:`MIN_SMD` (a "small" effect in Cohen's terms; below it, the segment is
not told apart by that feature) are listed, at most ``top``. A segment smaller than
:data:`MIN_TWINS` gets its size but no profile: the mean of a handful of customers is
noise, and a profile that precise would describe individuals rather than a segment.
"""

from __future__ import annotations

import math
from typing import Any

from protocol import FEATURE_FIELDS, MODEL_FIELDS, PRODUCTS, feature_floor, feature_names

from ._feature_words import describe
from ._state import StateStore
from ._state_tx import marks

__all__ = ["MAX_TOP", "MIN_SMD", "MIN_TWINS", "SegmentProfiles"]

#: the smallest standardised mean difference a profile lists
MIN_SMD = 0.2
#: the smallest segment that gets a profile of its features
MIN_TWINS = 10
#: most features one segment's profile lists
MAX_TOP = 20


class SegmentProfiles:
    """Profiles of a brand's segments from the twin query index (module docstring);
    blocking, thread-safe: call it through ``asyncio.to_thread`` from async code."""

    def __init__(self, *, state: StateStore) -> None:
        self._state = state

    def profile(
        self, brand: str, product: str, model: str | None = None, top: int = 5
    ) -> list[dict[str, Any]]:
        """Per model version of ``product`` (only ``model`` when given): its twins and,
        per segment, size, share and the ``top`` features that set it apart."""
        if product not in PRODUCTS:
            raise ValueError(f"product must be one of: {', '.join(sorted(PRODUCTS))}")
        seg, ref = MODEL_FIELDS[(product, "segment")], MODEL_FIELDS[(product, "segment_model")]
        names = {FEATURE_FIELDS[(product, n)]: n for n in feature_names(product)}
        # the model ref as '' when a twin has none (NULL would not group the same on both
        # backends' sorts, and '' is no valid ref)
        head = (
            "FROM twin_fields s LEFT JOIN twin_fields m ON m.brand = s.brand "
            "AND m.twin = s.twin AND m.field = ? "
        )
        where = "WHERE s.brand = ? AND s.field = ? AND s.num IS NOT NULL"
        params: list[Any] = [ref]
        tail: list[Any] = [brand, seg]
        if model is not None:
            where += " AND m.txt = ?"
            tail.append(model)
        with self._state.transaction(readonly=True) as tx:
            sizes = tx.execute(
                f"SELECT COALESCE(m.txt, ''), s.num, COUNT(*) {head}{where} "
                "GROUP BY COALESCE(m.txt, ''), s.num",
                (*params, *tail),
            ).fetchall()
            stats = tx.execute(
                f"SELECT COALESCE(m.txt, ''), s.num, f.field, COUNT(f.num), SUM(f.num), "
                f"SUM(f.num * f.num) {head}JOIN twin_fields f ON f.brand = s.brand "
                f"AND f.twin = s.twin AND f.field IN ({marks(len(names))}) {where} "
                "AND f.num IS NOT NULL GROUP BY COALESCE(m.txt, ''), s.num, f.field",
                (*params, *names, *tail),
            ).fetchall()
        return _profiles(product, names, sizes, stats, top)


def _profiles(
    product: str,
    names: dict[str, str],
    sizes: list[Any],
    stats: list[Any],
    top: int,
) -> list[dict[str, Any]]:
    # (model, segment) -> twins; (model, segment) -> feature -> (n, sum, sum of squares)
    size: dict[tuple[str, int], int] = {(str(m), int(s)): int(n) for m, s, n in sizes}
    sums: dict[tuple[str, int], dict[str, tuple[int, float, float]]] = {}
    for m, s, field, n, total, squares in stats:
        sums.setdefault((str(m), int(s)), {})[names[str(field)]] = (
            int(n),
            float(total),
            float(squares),
        )
    out = []
    for model in sorted({m for m, _s in size}):
        keys = sorted(k for k in size if k[0] == model)
        twins = sum(size[k] for k in keys)
        population: dict[str, tuple[float, float]] = {}
        for feature in names.values():
            n = sum(sums.get(k, {}).get(feature, (0, 0.0, 0.0))[0] for k in keys)
            if n == 0:
                continue
            mean = sum(sums.get(k, {}).get(feature, (0, 0.0, 0.0))[1] for k in keys) / n
            square = sum(sums.get(k, {}).get(feature, (0, 0.0, 0.0))[2] for k in keys) / n
            spread = math.sqrt(max(0.0, square - mean * mean))
            population[feature] = (mean, max(spread, feature_floor(feature)))
        segments = []
        for key in keys:
            features: list[dict[str, Any]] = []
            if size[key] >= MIN_TWINS:
                for feature, (n, total, _sq) in sums.get(key, {}).items():
                    mean = total / n
                    pop_mean, spread = population[feature]
                    smd = (mean - pop_mean) / spread
                    if abs(smd) < MIN_SMD:
                        continue
                    text, ratio = describe(product, feature, mean, pop_mean)
                    features.append(
                        {
                            "feature": feature,
                            "mean": round(mean, 6),
                            "population_mean": round(pop_mean, 6),
                            "smd": round(smd, 3),
                            "ratio": None if ratio is None else round(ratio, 3),
                            "text": text,
                        }
                    )
                features.sort(key=lambda f: (-abs(f["smd"]), f["feature"]))
                features = features[:top]
            share = size[key] / twins
            summary = (
                f"segment {key[1]}: {size[key]} twins ({share:.0%})"
                + (": " + "; ".join(f["text"] for f in features[:3]) if features else "")
                + ("" if size[key] >= MIN_TWINS else f" (under {MIN_TWINS} twins: no profile)")
            )
            segments.append(
                {
                    "segment": key[1],
                    "twins": size[key],
                    "share": round(share, 6),
                    "features": features,
                    "summary": summary,
                }
            )
        out.append({"model": model or None, "twins": twins, "segments": segments})
    return out
