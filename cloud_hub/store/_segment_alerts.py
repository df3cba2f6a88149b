"""Share alerts: a segment whose share of its population moved beyond normal variation.

Input: the daily sizes of :func:`~cloud_hub.store.segment_sizes` over a baseline window
(``baseline`` days, each day's share = the segment's twins / its model's twins that day)
and the day checked. A segment's share is compared with the mean of its baseline shares:

    z = (share_now - mean_baseline) / sigma
    sigma = sqrt(sd_baseline² + mean_baseline * (1 - mean_baseline) / twins_now)

``sd_baseline`` is how much the share moves from day to day when nothing happens (models
re-scoring blended customers, customers joining): its own history is the honest measure
of normal for *this* segment. The binomial term is the noise a share of ``twins_now``
customers has anyway; it keeps sigma from collapsing to 0 when the baseline happens to
be flat (a fleet that never moved would otherwise alert on one customer). A segment
alerts when ``|z| > k`` (default 3: under normal variation about 3 checks in 1,000 per
segment), **and** the shift is at least ``min_shift`` in absolute share (in a large
fleet a tiny, real move is statistically clear and commercially meaningless), **and**
the segment held at least ``min_twins`` twins at the baseline or now (a segment of five
customers moves 20 % with one of them). Days with no twin scored by the model are left
out of the baseline; fewer than :data:`MIN_BASELINE_DAYS` days left give no verdict.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ._segment_sizes import SegmentSizes

__all__ = ["MIN_BASELINE_DAYS", "ShareRule", "share_alerts"]

#: baseline days with data a verdict needs
MIN_BASELINE_DAYS = 3


class ShareRule:
    """The alert rule's thresholds (module docstring)."""

    def __init__(self, *, k: float = 3.0, min_twins: int = 20, min_shift: float = 0.02) -> None:
        self.k, self.min_twins, self.min_shift = k, min_twins, min_shift


def share_alerts(sizes: SegmentSizes, rule: ShareRule) -> list[dict[str, Any]]:
    """Per (model, segment) of ``sizes`` (the baseline days, then the day checked): its
    share now and at the baseline, sigma, z and whether it alerts, with why."""
    days = len(sizes.times_ms)
    totals: dict[str | None, list[int]] = {}
    for s in sizes.series:
        model_totals = totals.setdefault(s["model"], [0] * days)
        for i, n in enumerate(s["twins"]):
            model_totals[i] += n
    out = []
    for s in sizes.series:
        total = totals[s["model"]]
        counts = s["twins"]
        base = [counts[i] / total[i] for i in range(days - 1) if total[i] > 0]
        base_twins = [counts[i] for i in range(days - 1) if total[i] > 0]
        now_twins, now_total = counts[-1], total[-1]
        share = now_twins / now_total if now_total else 0.0
        entry: dict[str, Any] = {
            "model": s["model"],
            "segment": s["segment"],
            "twins": now_twins,
            "share": round(share, 6),
            "baseline_share": None,
            "sigma": None,
            "z": None,
            "alert": False,
        }
        out.append(entry)
        if len(base) < MIN_BASELINE_DAYS or now_total == 0:
            entry["why"] = f"fewer than {MIN_BASELINE_DAYS} baseline days with twins: no verdict"
            continue
        mean = statistics.fmean(base)
        spread = statistics.stdev(base)
        sigma = math.sqrt(spread**2 + mean * (1 - mean) / now_total)
        shift = share - mean
        z = shift / sigma if sigma > 0 else (0.0 if shift == 0 else math.copysign(math.inf, shift))
        entry.update(baseline_share=round(mean, 6), sigma=round(sigma, 6))
        entry["z"] = round(z, 3) if math.isfinite(z) else None
        big_enough = max(now_twins, round(statistics.fmean(base_twins))) >= rule.min_twins
        direction = "grew" if shift > 0 else "shrank"
        if not big_enough:
            entry["why"] = f"under {rule.min_twins} twins: too small to judge"
        elif abs(z) <= rule.k:
            entry["why"] = f"within normal variation (|z| {abs(z):.1f} <= {rule.k:g})"
        elif abs(shift) < rule.min_shift:
            entry["why"] = f"share moved {abs(shift):.1%}, under the {rule.min_shift:.1%} minimum"
        else:
            entry["alert"] = True
            entry["why"] = (
                f"share {direction} from {mean:.1%} to {share:.1%} ({z:+.1f} sigma of its "
                "normal variation)"
            )
    return out
