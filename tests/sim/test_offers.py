"""Offers with a hidden true effect per persona (firmware_sim._offers, docs/simulation.md,
"Offers"): seeded, both potential outcomes known, the effect what the spec says."""

from __future__ import annotations

import pytest

from firmware_sim import (
    CHECK_IN_SIGNALS,
    DAY_MS,
    ChurnSpec,
    Fleet,
    FleetSpec,
    OfferSpec,
    OfferTruth,
    SimulationError,
)
from protocol import CATALOG, check_signal_value

START = 1_790_000_000_000


def fleet() -> Fleet:
    # A high churn rate so the 30 days after the window hold many would-be churners.
    spec = FleetSpec(seed=3, devices=400, days=1.0, start_ms=START, churn=ChurnSpec(1.0))
    return Fleet.generate(spec)


def window(f: Fleet) -> tuple[int, int]:
    return f.end_ms, f.end_ms + 30 * DAY_MS


def test_the_saved_share_of_each_persona_is_its_true_effect() -> None:
    f = fleet()
    effect = {"early_bird": 0.8, "night_owl": 0.2, "homebody": 0.5}
    truth = OfferTruth(f, OfferSpec(effect=effect, default=0.0, seed=1))
    start, end = window(f)
    churners = [c for c in f.customers if truth.would_churn(c.subject, start, end)]
    assert len(churners) > 150
    for persona in (*effect, "commuter"):
        mine = [c.subject for c in churners if c.persona == persona]
        share = sum(truth.saved(s) for s in mine) / len(mine)
        # a binomial share of >= 25 draws: within 4 standard errors of the truth
        want = effect.get(persona, 0.0)
        assert abs(share - want) <= 4 * (want * (1 - want) / len(mine)) ** 0.5 + 1e-9, persona


def test_draws_are_seeded_and_keyed_by_offer() -> None:
    f = fleet()
    subjects = [c.subject for c in f.customers]
    a = OfferTruth(f, OfferSpec(default=0.5, seed=1))
    b = OfferTruth(f, OfferSpec(default=0.5, seed=1))
    c = OfferTruth(f, OfferSpec(name="other", default=0.5, seed=1))
    assert [a.saved(s) for s in subjects] == [b.saved(s) for s in subjects]
    assert [a.saved(s) for s in subjects] != [c.saved(s) for s in subjects]


def test_only_an_exposure_before_the_churn_date_saves() -> None:
    f = fleet()
    truth = OfferTruth(f, OfferSpec(default=1.0))
    start, end = window(f)
    churner = next(c for c in f.customers if truth.would_churn(c.subject, start, end))
    assert churner.churn_ms is not None
    assert truth.churns(churner.subject, start, end)  # not exposed: churns
    late = OfferTruth(f, OfferSpec(default=1.0))
    late.expose(churner.subject, churner.churn_ms + 1)
    assert late.churns(churner.subject, start, end)  # exposed too late
    truth.expose(churner.subject, start)
    assert not truth.churns(churner.subject, start, end)
    assert truth.exposed == {churner.subject: start}


def test_true_uplift_is_the_share_kept_and_zero_without_effect() -> None:
    f = fleet()
    start, end = window(f)
    subjects = [c.subject for c in f.customers]
    none = OfferTruth(f, OfferSpec(default=0.0))
    full = OfferTruth(f, OfferSpec(default=1.0))
    would = sum(none.would_churn(s, start, end) for s in subjects) / len(subjects)
    assert none.true_uplift(subjects, start, end) == 0.0
    assert full.true_uplift(subjects, start, end) == pytest.approx(would)
    assert 0.3 < would < 0.8


def test_check_ins_come_from_those_who_stayed_and_are_valid_signals() -> None:
    f = fleet()
    start, end = window(f)
    truth = OfferTruth(f, OfferSpec(default=1.0))
    for device in f.devices[:40]:
        for u in device.users:
            truth.expose(u, start)
    stayed = 0
    for device in f.devices[:40]:
        signals = truth.check_ins(device.device_id, start, end, end, 1000)
        assert [s.subject for s in signals] == list(device.users)  # everyone kept
        for s in signals:
            assert s.name == CHECK_IN_SIGNALS[device.product]
            assert check_signal_value(CATALOG[s.name], s.value) == s.value
        stayed += len(signals)
    assert stayed > 40
    nobody = OfferTruth(f, OfferSpec(default=0.0))
    gone = [d for d in f.devices if any(nobody.would_churn(u, start, end) for u in d.users)]
    assert all(len(nobody.check_ins(d.device_id, start, end, end, 0)) < len(d.users) for d in gone)


def test_a_bad_offer_says_what_to_change() -> None:
    with pytest.raises(SimulationError, match=r"effect\['early_bird'\] must be a share"):
        OfferSpec(effect={"early_bird": 1.5})
    with pytest.raises(SimulationError):
        OfferTruth(fleet(), OfferSpec()).expose("nobody@example.com", 0)
