"""The named profiles: ``easy`` (every knob off) and ``realistic`` (docs/simulation.md).

Each realistic level, and why it is plausible, is next to it; docs/simulation.md has
the same table. They are set once, from what is known of real fleets, and never tuned
to make a model look good (issue 12).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._knobs import AnomalyMix, ChurnSpec, FaultSpec, LifeSpec, PopulationSpec, SensorSpec

__all__ = ["PROFILES", "REALISTIC_ZONES", "realistic_parts"]

#: Where the realistic fleet's households live: a brand selling in Europe and North
#: America mostly, with some customers in South America, India, Japan and Australia
#: (southern summers, a +05:30 zone, zones without DST). Repeats weight a zone.
REALISTIC_ZONES: tuple[str, ...] = (
    "Europe/London", "Europe/London", "Europe/Berlin", "Europe/Berlin", "Europe/Berlin",
    "Europe/Madrid", "Europe/Helsinki",
    "America/New_York", "America/New_York", "America/Chicago", "America/Denver",
    "America/Phoenix", "America/Los_Angeles", "America/Los_Angeles",
    "America/Sao_Paulo", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney",
)  # fmt: skip


def realistic_parts() -> dict[str, Any]:
    """The ``FleetSpec`` fields of the realistic profile."""
    return {
        "faults": FaultSpec(
            # Firmware trouble as in the easy fleet (1 % glitched values, 0.2 % absurd
            # stamps, 0.5 % duplicate sends, a reboot every other day) ...
            # ... 15 % of devices never get their clock set (no NTP), minutes to 2 h off
            skew_fraction=0.15,
            max_skew_ms=2 * 3_600_000,
            # ... and their cheap real-time clocks drift: up to 50 ppm (4 s a day)
            max_drift_ppm=50.0,
            # anomalies of every size and kind: 0.3 % of gauge readings start one; shifts
            # and stuck sensors last hours, so ~6 % of gauge readings are anomalous
            anomaly_rate=0.003,
            anomaly_mix=AnomalyMix.varied(),
        ),
        # Real monthly churn of subscription and connected-device customers: 1-3 %.
        "churn_fraction": 0.0,
        "churn": ChurnSpec(
            monthly_rate=0.02,
            # a decline of 3 days to 6 weeks, down to 20-90 % of usual use; 30 % of
            # churners stop without any warning (moved, device broken, switched brand)
            ramp_days=(3.0, 42.0),
            floor=(0.2, 0.9),
            no_warning_share=0.3,
            # products are abandoned one after the other, up to 3 weeks apart
            stagger_days=21.0,
            # ... and 1 % a month of multi-product customers drop one product only
            partial_monthly_rate=0.01,
        ),
        "population": PopulationSpec(
            # customers of one persona differ: rates x0.55-1.8, setpoints +-2 °C, the day
            # 1-2 h earlier or later (SPREADS in firmware_sim/_habits.py)
            variation=1.0,
            # one customer in five lives between two personas
            blend_share=0.2,
            # no novel personas (a held-out fleet may add them: novel_share)
            novel_share=0.0,
            timezones=REALISTIC_ZONES,
            # 5 % of devices are never told their zone (they think they are on UTC)
            unset_tz_share=0.05,
            # 40 % of shared devices know only the account holder; the others put 10 %
            # of uses on the wrong member of the household
            single_subject_share=0.4,
            misattribution=0.1,
        ),
        "life": LifeSpec(
            seasons=True,
            # three holidays a year per household (about 4 weeks away), two illnesses a
            # year per person, a lasting habit change per customer every ~4 years
            # (2 % a month: as often as churn, so a decline is not a sign of churn alone)
            holidays_per_year=3.0,
            illness_per_year=2.0,
            habit_changes_per_month=0.02,
            # about one genuine big event a week per device (a party, a window opened)
            events_per_month=4.0,
        ),
        "sensors": SensorSpec(
            # sensor noise at typical consumer-grade levels; 2 % of signals lost on the
            # way; an outage (power, Wi-Fi, unplugged) about monthly, 4 h median, some
            # lasting days; 10 % of analog sensors drift
            noise=1.0,
            loss=0.02,
            outages_per_month=1.0,
            outage_median_h=4.0,
            drift_share=0.1,
        ),
    }


#: profile name -> FleetSpec fields (``--profile`` of ``twinsync sim``)
PROFILES: dict[str, Callable[[], dict[str, Any]]] = {"easy": dict, "realistic": realistic_parts}
