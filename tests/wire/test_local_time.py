"""The household's wall clock: zones resolve to the right offsets, bad zones are refused."""

from __future__ import annotations

import pytest

from protocol import LocalTime, SchemaError, check_timezone

HOUR = 3_600_000
# 2026-03-29 00:30 UTC: Europe/Berlin moves from +01:00 to +02:00 at 01:00 UTC that night.
BEFORE_DST = 1_774_744_200_000


def test_fixed_offsets_and_utc() -> None:
    assert LocalTime().offset_ms(BEFORE_DST) == 0
    assert LocalTime("UTC").local_ms(BEFORE_DST) == BEFORE_DST
    assert LocalTime("+05:30").offset_ms(0) == 5 * HOUR + 30 * 60_000
    assert LocalTime("-08:00").offset_ms(0) == -8 * HOUR
    assert LocalTime("UTC+02").offset_ms(0) == 2 * HOUR


def test_iana_zone_follows_daylight_saving() -> None:
    berlin = LocalTime("Europe/Berlin")
    assert berlin.offset_ms(BEFORE_DST) == HOUR
    assert berlin.offset_ms(BEFORE_DST + HOUR) == 2 * HOUR
    # Southern hemisphere, the other way round: Sydney is on +11:00 in March.
    assert LocalTime("Australia/Sydney").offset_ms(BEFORE_DST) == 11 * HOUR
    # The cache is per quarter hour: asking twice gives the same answer.
    assert berlin.offset_ms(BEFORE_DST + HOUR) == berlin.offset_ms(BEFORE_DST + HOUR + 1)


def test_utc_ms_inverts_local_ms() -> None:
    tokyo = LocalTime("Asia/Tokyo")
    assert tokyo.utc_ms(tokyo.local_ms(BEFORE_DST)) == BEFORE_DST


@pytest.mark.parametrize(
    "zone",
    [
        "",
        "Mars/Olympus_Mons",
        "../../etc/passwd",  # zoneinfo refuses paths: nothing outside the tz database is read
        "/etc/localtime",
        "+15:00",  # no zone is that far from UTC
        "+01:75",
        "x" * 65,
        "Europe/Berlin\x00",
    ],
)
def test_unknown_or_hostile_zones_are_refused(zone: str) -> None:
    with pytest.raises(SchemaError) as err:
        check_timezone(zone)
    assert err.value.reason == "bad_timezone"
    assert "IANA name" in str(err.value) or "offset" in str(err.value)  # says what to give
    with pytest.raises(SchemaError):
        LocalTime(zone)


def test_zones_compare_by_name() -> None:
    assert LocalTime("Europe/Berlin") == LocalTime("Europe/Berlin")
    assert LocalTime("Europe/Berlin") != LocalTime("UTC")
    assert len({LocalTime("UTC"), LocalTime("UTC")}) == 1
