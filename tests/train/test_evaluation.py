"""The evaluation's arithmetic on hand-made data: every number the report and
docs/models.md quote comes from these functions, so each is checked against a case
whose answer is known (no fleet, no training run)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocol import ANOMALY_FEATURES, feature_names
from twinsync.training import (
    ALERT_GAP_MS,
    AnomalyRows,
    alert_groups,
    anomaly_flag_scores,
    average_precision,
    check_targets,
    fit_anomaly_thresholds,
    fit_segment_baselines,
    matched_accuracy,
    precision_at_rate,
    robust_scaler,
)


def test_matched_accuracy_is_one_to_one() -> None:
    personas = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    # any renaming of the segments is as good as the right names
    assert matched_accuracy([7, 7, 7, 7, 3, 3, 3, 3, 9, 9], personas) == 1.0
    # one segment for two personas: only one of them can be matched to it
    assert matched_accuracy([0] * 8 + [1, 1], personas) == pytest.approx(6 / 10)
    # more segments than personas: the unmatched segment's rows count as wrong
    assert matched_accuracy([0, 0, 0, 5, 1, 1, 1, 1, 2, 2], personas) == pytest.approx(9 / 10)


def test_precision_at_rate_does_not_depend_on_the_sampled_share() -> None:
    """Ranking k = expected churners at a real rate: precision as the brand would see it."""
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(2.0, 1.0, 400), rng.normal(0.0, 1.0, 4000)
    few = np.r_[pos[:40], neg]
    many = np.r_[pos, neg[:400]]
    truth_few = np.r_[np.ones(40, bool), np.zeros(4000, bool)]
    truth_many = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    a = precision_at_rate(truth_few, few, 0.02)
    b = precision_at_rate(truth_many, many, 0.02)
    assert a == pytest.approx(b, abs=0.08)
    # A perfect ranking has precision 1 at any rate; a random one, the rate itself.
    perfect = precision_at_rate(truth_many, np.r_[np.ones(400), np.zeros(400)], 0.02)
    assert perfect == 1.0
    random = precision_at_rate(truth_many, rng.random(800), 0.02)
    assert random < 0.1
    # Average precision re-weighted to the real rate falls with it, unweighted it cannot.
    ap_real = average_precision(truth_many, many, 0.02)
    assert ap_real < average_precision(truth_many, many) - 0.3


def test_scaler_never_divides_by_less_than_the_floor() -> None:
    """The issue's collapse: 0.11 kWh a day of training spread made ordinary loss huge."""
    names = feature_names("thermostat")
    column = names.index("habit_kwh_per_day")
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 1.0, (200, len(names)))
    x[:, column] = rng.normal(3.0, 0.08, 200)  # nearly constant in this fleet
    scaler = robust_scaler(x, names)
    assert scaler.scale_[column] == 0.5  # the floor, not 0.08 x 1.35
    lossy = x[:1].copy()
    lossy[0, column] = 2.0  # a device that missed a third of its energy reports
    assert abs(scaler.transform(lossy)[0, column]) < 2.5
    other = names.index("habit_setpoint_c")
    assert scaler.scale_[other] == pytest.approx(1.0, rel=0.2)  # the data's own spread


def test_segment_baselines_find_the_telling_features() -> None:
    """With one feature that splits the personas, the best rule uses it and is exact."""
    names = feature_names("coffee")
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (300, len(names)))
    personas = [("a", "b", "c")[i % 3] for i in range(300)]
    telling = names.index("habit_cups_per_day")
    x[:, telling] = [{"a": 1.0, "b": 3.0, "c": 5.0}[p] for p in personas]
    columns = [i for i in range(len(names)) if names[i].startswith(("habit", "share"))]
    found = {b.name: b for b in fit_segment_baselines(x.tolist(), personas, "coffee", columns, 3)}
    assert set(found) == {"kmeans_1", "rule_1", "kmeans_2", "rule_2"}
    assert found["rule_1"].features == ("habit_cups_per_day",)
    assert found["rule_1"].train_accuracy == 1.0
    assert "habit_cups_per_day" in found["rule_2"].features
    labels = found["rule_1"].predict(x)
    assert matched_accuracy(labels.tolist(), personas) == 1.0


def test_anomaly_thresholds_and_flag_scores_by_size_and_kind() -> None:
    rows = AnomalyRows()
    n = len(ANOMALY_FEATURES)
    z = ANOMALY_FEATURES.index("abs_z")

    def add(value: float, episode: str = "", size: str = "", kind: str = "") -> None:
        x = [0.0] * n
        x[z] = value
        rows.x.append(x)
        rows.injected.append(bool(episode))
        rows.size.append(size)
        rows.kind.append(kind)
        rows.episode.append(episode)
        rows.event.append(False)
        rows.signal.append("thermostat.temperature_c")
        rows.device.append("d")
        rows.ts.append(len(rows.ts) * 10 * MINUTE_MS)

    for v in np.linspace(0.0, 2.0, 96):
        add(float(v))
    add(9.0, "d:1", "large", "spike")
    add(5.0, "d:2", "small", "level_shift")
    add(1.0, "d:2", "small", "level_shift")  # a shift is found by any of its readings
    add(1.5, "d:3", "small", "spike")  # lost in the noise
    rows.unscored["d:4"] = ("large", "out_of_pattern")  # no gauge reading: missed
    (threshold,) = fit_anomaly_thresholds(rows.x, rows.injected, ["abs_z"])
    assert 2.0 < threshold.threshold <= 5.0
    scores = anomaly_flag_scores(threshold.flags(rows.x), rows)
    assert scores["anomalies"] == 4
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["precision"] == 1.0
    assert scores["by_size"]["large"]["recall"] == pytest.approx(1 / 2)
    assert scores["by_size"]["small"]["recall"] == pytest.approx(1 / 2)
    assert scores["by_kind"]["out_of_pattern"]["recall"] == 0.0
    assert scores["by_kind"]["level_shift"]["recall"] == 1.0


MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


def _alert_rows() -> tuple[AnomalyRows, np.ndarray]:
    """Two devices, one day each, readings every 10 minutes, with flags set by hand:

    - device a, temperature: a spike (anomaly a:1, large) flagged on its reading and on
      the recovery reading after it (one alert, true); a level shift (a:2, small)
      flagged on two readings 50 minutes apart (one alert, true) and again 3 hours
      later, after its end (a second alert, false: it overlaps no anomaly);
    - device a, setpoint: flagged at the same time as the spike, but another signal:
      its own alert (false);
    - device b: one false flag alone (a false alert), one anomaly never flagged (b:1,
      small: missed), and an out-of-pattern anomaly with no reading (b:2, large).
    """
    rows = AnomalyRows()
    flags: list[bool] = []

    def add(device: str, signal: str, minute: int, flag: bool, episode: str = "",
            size: str = "", kind: str = "") -> None:  # fmt: skip
        rows.x.append([0.0] * len(ANOMALY_FEATURES))
        rows.injected.append(bool(episode))
        rows.size.append(size)
        rows.kind.append(kind)
        rows.episode.append(episode)
        rows.event.append(False)
        rows.signal.append(signal)
        rows.device.append(device)
        rows.ts.append(minute * MINUTE_MS)
        flags.append(flag)

    temp, setpoint = "thermostat.temperature_c", "thermostat.setpoint_c"
    spike = {60: (True, "a:1", "large", "spike"), 70: (True, "", "", "")}
    shift = {m: (m in (300, 350), "a:2", "small", "level_shift") for m in range(300, 400, 10)}
    for minute in range(0, 24 * 60, 10):
        flag, episode, size, kind = spike.get(minute) or shift.get(minute) or (False, "", "", "")
        add("a", temp, minute, flag or minute == 570, episode, size, kind)
        add("a", setpoint, minute, minute == 60)
        b_episode = ("b:1", "small", "spike") if minute == 900 else ("", "", "")
        add("b", temp, minute, minute == 200, *b_episode)
    rows.unscored["b:2"] = ("large", "out_of_pattern")
    return rows, np.asarray(flags)


def test_alerts_group_flags_of_one_signal_within_the_gap() -> None:
    rows, flags = _alert_rows()
    found = alert_groups(flags, rows)
    # a's temperature: spike + recovery (10 min apart), the shift's two flags (50 min),
    # the late flag (220 min after the shift's last); a's setpoint; b's lone flag.
    assert sorted(len(a) for a in found) == [1, 1, 1, 2, 2]
    # A gap shorter than the shift's 50 minutes splits its alert in two.
    assert len(alert_groups(flags, rows, gap_ms=30 * MINUTE_MS)) == 6
    assert ALERT_GAP_MS == HOUR_MS


def test_alert_precision_counts_alerts_and_false_alerts_per_device_day() -> None:
    rows, flags = _alert_rows()
    scores = anomaly_flag_scores(flags, rows)
    # Per reading: 3 true flags (the spike, the shift's two) against 4 false ones.
    assert scores["false_flags"] == 4
    assert scores["precision"] == pytest.approx(3 / 7)
    alerts = scores["alerts"]
    assert alerts["alerts"] == 5
    assert alerts["false_alerts"] == 3
    assert alerts["precision"] == pytest.approx(2 / 5)
    # two devices observed for 23 h 50 min each
    assert alerts["device_days"] == pytest.approx(2 * (24 * 60 - 10) / (24 * 60))
    assert alerts["false_per_device_day"] == pytest.approx(3 / alerts["device_days"])
    # As if every anomaly (4) were of the class: large has 1 true alert over 2
    # anomalies, small 1 over 2 -> 2 true alerts against 3 false ones each.
    assert alerts["by_size"]["large"]["precision"] == pytest.approx(2 / 5)
    assert alerts["by_size"]["small"]["precision"] == pytest.approx(2 / 5)
    assert alerts["by_kind"]["spike"]["precision"] == pytest.approx(2 / 5)  # 1 of 2
    assert alerts["by_kind"]["level_shift"]["precision"] == pytest.approx(4 / 7)  # 1 of 1
    assert alerts["by_kind"]["out_of_pattern"]["precision"] == 0.0
    # Recall stays per anomaly: the spike and the shift are found, b's two are not.
    assert scores["recall"] == pytest.approx(2 / 4)
    # The target is judged on the alert precision; the per-reading one rides along.
    targets = check_targets({"1": {"thermostat": {"anomaly": scores}}})["1"]["thermostat"]
    precision = targets["anomaly_precision_every_size"]
    assert precision["value"] == pytest.approx(2 / 5)
    assert precision["per_reading"] == min(v["precision"] for v in scores["by_size"].values())


def _scores(seg: float, base2: float, auc7: float, base7: float, worst_recall: float) -> dict:
    return {
        "segment": {"accuracy": seg, "points_above_best_2_feature": 100 * (seg - base2)},
        "churn": {"by_lead": {"7": {"auc": auc7, "baseline_auc": base7}}},
        "anomaly": {
            "by_size": {
                "small": {"precision": 0.95, "recall": worst_recall},
                "large": {"precision": 0.99, "recall": 1.0},
            }
        },
    }


def test_targets_are_met_only_above_the_threshold_and_the_baseline() -> None:
    good = _scores(0.9, 0.7, 0.85, 0.8, 0.95)
    bad = _scores(0.9, 0.8, 0.85, 0.86, 0.5)
    targets = check_targets({"1001": {"coffee": good, "tv": bad}})["1001"]
    assert all(t["met"] for t in targets["coffee"].values())
    tv = targets["tv"]
    assert tv["segment_accuracy"]["met"]
    assert not tv["segment_points_above_best_2_feature"]["met"]  # 10 points only
    assert not tv["churn_auc_7d"]["met"]  # above 0.80 but not above the baseline
    assert not tv["anomaly_recall_every_size"]["met"]
    assert tv["anomaly_recall_every_size"]["worst_size"] == "small"
    assert math.isclose(tv["anomaly_recall_every_size"]["value"], 0.5)
