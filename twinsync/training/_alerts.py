"""Anomaly flags as an operator sees them: alerts, not readings.

An anomaly model flags readings, but nobody acts on a reading: an operator gets an
*alert* per incident on a device's signal. So beside the per-reading precision
(:func:`._evaluate.anomaly_flag_scores`), the report scores alerts:

- an **alert** is a run of flagged readings of one device's signal, each within
  :data:`ALERT_GAP_MS` of the previous flagged one (readings in between may be
  unflagged): the same signal flagged again within the hour is the same incident for
  whoever looks at it (the way an alerting system groups repeats of one alert). Why
  an hour: the gauges report every few minutes to quarter-hour, so one incident (a
  spike and the reading after it, a level shift flagged on some of its readings) is
  flagged on readings minutes apart; two unrelated incidents on one signal within the
  hour are rare (an anomaly starts at 0.3 % of readings, docs/simulation.md);
- an alert is **true** if one of its readings is an injected anomaly's (it overlaps
  one), else **false**: it cost an operator a look at a healthy device;
- **precision** is true alerts over alerts; for a size class (or kind), as for the
  per-reading precision, what it would be if every anomaly were of that class at the
  same rate: its true alerts per anomaly times all anomalies, against the false alerts
  (an alert overlapping several anomalies counts for each of them);
- **false alerts per device-day**: false alerts over the days the scored devices
  were observed (from each device's first to its last scored reading).

Recall stays per anomaly (episode): an anomaly is found when one of its readings is
flagged, i.e. when an alert overlaps it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ._dataset import AnomalyRows

__all__ = ["ALERT_GAP_MS", "alert_groups", "alert_scores", "device_days"]

#: flagged readings of one device's signal this close (device clock) are one alert
ALERT_GAP_MS = 3_600_000
_DAY_MS = 86_400_000


def alert_groups(
    flagged: np.ndarray, rows: AnomalyRows, gap_ms: int = ALERT_GAP_MS
) -> list[list[int]]:
    """The alerts: each a list of the flagged rows' indices (see the module docstring)."""
    streams: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index in np.flatnonzero(flagged).tolist():
        streams[(rows.device[index], rows.signal[index])].append(index)
    out: list[list[int]] = []
    for members in streams.values():
        members.sort(key=lambda i: (rows.ts[i], i))
        current = [members[0]]
        for i in members[1:]:
            if rows.ts[i] - rows.ts[current[-1]] > gap_ms:
                out.append(current)
                current = []
            current.append(i)
        out.append(current)
    return out


def device_days(rows: AnomalyRows) -> float:
    """Days the rows' devices were observed: each from its first to its last reading."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for device, ts in zip(rows.device, rows.ts, strict=True):
        first[device] = min(first.get(device, ts), ts)
        last[device] = max(last.get(device, ts), ts)
    return sum(last[d] - first[d] for d in first) / _DAY_MS


def alert_scores(
    flagged: np.ndarray,
    rows: AnomalyRows,
    classes: dict[str, tuple[str, str]],
    gap_ms: int = ALERT_GAP_MS,
) -> dict[str, Any]:
    """Per-alert precision overall, by size class and by kind, and false alerts per
    device-day. ``classes``: every anomaly (episode -> size, kind), scored or not."""
    found = alert_groups(flagged, rows, gap_ms)
    true_alerts: dict[str, int] = dict.fromkeys(classes, 0)
    false_alerts = 0
    for alert in found:
        episodes = {rows.episode[i] for i in alert if rows.injected[i]}
        if not episodes:
            false_alerts += 1
        for episode in episodes:
            true_alerts[episode] = true_alerts.get(episode, 0) + 1
    true_count = sum(1 for a in found if any(rows.injected[i] for i in a))
    days = device_days(rows)
    n = len(classes)
    out: dict[str, Any] = {
        "gap_s": gap_ms / 1000,
        "alerts": len(found),
        "false_alerts": false_alerts,
        "precision": true_count / len(found) if found else float("nan"),
        "device_days": days,
        "false_per_device_day": false_alerts / days if days else float("nan"),
    }
    for index, label in ((0, "size"), (1, "kind")):
        groups: dict[str, Any] = {}
        for name in sorted({c[index] for c in classes.values()}):
            members = [k for k, c in classes.items() if c[index] == name]
            hits = sum(true_alerts[k] for k in members) / len(members) * n
            total = hits + false_alerts
            groups[name] = {"precision": hits / total if total else float("nan")}
        out[f"by_{label}"] = groups
    return out
