"""The churn ceiling from observed counts: what an oracle could tell from the uses alone.

The engagement ceiling (:func:`._evaluate.evaluate_churn`) knows how far each customer
has truly wound down, which no device can see: a device sees only how many uses were
reported, and uses are random (Poisson). This oracle knows more than any model (each
customer's true usual rate of use on the device, and how the fleet's churners wind
down) but sees only the counts: the uses reported in each of the last
:data:`._dataset.COUNT_DAYS` days (28: the feature window; a model sees the earlier
days only as the usual rate, which the oracle knows exactly). Its score is the
likelihood ratio of those counts under "churns within the horizon" (a mixture over the
fleet's churn ramps, of every length and depth, no warning included, and over where in
the horizon the churn falls) against "uses the product as usual". Ranking by that
ratio is the best any score built on these counts can do (Neyman-Pearson), up to what
the oracle leaves out (outages, holidays and illness are noise to it as to a model):
if it stays near chance, the warning is not in the data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from firmware_sim import ChurnSpec

__all__ = ["count_ceiling"]

# Ramps (and churn times inside the horizon) the mixture averages over.
_DRAWS = 400
# Use never falls below this share in the mixture (a log of 0 would make one use
# infinitely unlikely under a deep ramp).
_MIN_USE = 1e-3


def _ramps(spec: ChurnSpec, horizon_days: float, days: int, seed: int) -> np.ndarray:
    """Use relative to usual (draw x day before the cut-off) of churners drawn like
    firmware_sim's :func:`firmware_sim.plan_churn`, each cut off at a random point
    within ``horizon_days`` before their churn."""
    rng = random.Random(f"count-ceiling:{seed}")
    out = np.ones((_DRAWS, days))
    back = np.arange(days) + 0.5  # the middle of each day before the cut-off, in days
    for k in range(_DRAWS):
        lead = rng.uniform(0.0, horizon_days)
        if rng.random() < spec.no_warning_share:
            continue  # no warning: use as usual until the churn
        length = rng.uniform(*spec.ramp_days)
        depth = rng.uniform(*spec.floor)
        if spec.stagger_days > 0:  # each product on a ramp of its own around the customer's
            length *= rng.uniform(0.5, 1.5)
            depth = min(1.0, max(0.0, depth + rng.uniform(-0.15, 0.15)))
        if length <= 0:
            continue
        before = lead + back  # days before the churn
        done = np.clip(1.0 - before / length, 0.0, 1.0)
        out[k] = 1.0 - (1.0 - depth) * done
    return np.maximum(out, _MIN_USE)


def count_ceiling(
    daily_uses: Sequence[Sequence[int]],
    usual_rate: Sequence[float],
    spec: ChurnSpec,
    *,
    horizon_days: float,
    seed: int = 0,
) -> np.ndarray:
    """Log likelihood ratio per row: "churns within ``horizon_days``" against "as usual".

    ``daily_uses``: per row the uses reported in each whole day before the cut-off,
    the latest first; ``usual_rate``: the customer's true usual uses per day. A row
    without a usual rate scores 0 (nothing to compare with).
    """
    counts = np.asarray(daily_uses, dtype=np.float64)
    rate = np.asarray(usual_rate, dtype=np.float64)
    if counts.size == 0:
        return np.zeros(len(rate))
    use = _ramps(spec, horizon_days, counts.shape[1], seed)  # draws x days
    # Poisson log-likelihood ratio of each day's count, summed over days, per draw:
    # n log(e) - rate (e - 1).
    log_lr = counts @ np.log(use).T - rate[:, None] * (use - 1.0).sum(axis=1)[None, :]
    top = log_lr.max(axis=1, keepdims=True)
    score = top[:, 0] + np.log(np.mean(np.exp(log_lr - top), axis=1))
    return np.where(rate > 0, score, 0.0)
