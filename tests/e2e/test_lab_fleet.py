"""The strategy lab finds the simulator's hidden truth: a simulated fleet through real
agents, mosquitto, a hub and InfluxDB; an experiment run through the hub's API; the
outcome read from the twins; the estimated uplift's 95 % interval contains the true
effect on the assigned population (firmware_sim's ``OfferTruth``: both potential outcomes
of every customer are known), and with no true effect it contains 0.

The fleet's customers churn at 1 per 30 days, so about 60 % of them would leave in the
30-day outcome window after the simulated day. After the day the hub assigns the twins;
the hub sends each treated twin's devices the signed offer, the agents check it and
hand it to the simulated households' application, and each treated customer responds
with its persona's hidden effect. Then every device sends one use per customer
still there (``OfferTruth.check_ins``, stamped now); a customer who left sends nothing,
so their twin's last seen stays before the window, which is what the hub reads as
churned. The counts per arm must equal the truth's exactly, and the interval must hold
the true uplift.

The interval's coverage is measured without services on the same kind of fleet
(``bench.lab_coverage``: 400 seeds, about 91 customers, 96.8-97.5 % with the effects
below, 94.0-95.0 % with none; docs/hub.md, "Strategy lab"). This test replays one seeded
assignment per case; it fails when the estimate is biased (the counts would differ from
the truth's first).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from _fakes import send_json
from _poll import eventually
from conftest import build_stack

from cloud_hub import Hub
from cloud_hub.store import Experiments, state_store_from
from edge_agent import Exposure
from firmware_sim import DAY_MS, ChurnSpec, FleetRunner, OfferSpec, OfferTruth
from protocol import OPTIONAL_PURPOSES, SystemClock, pseudonymize
from twinsync.services import LocalServices

pytestmark = pytest.mark.e2e

ALL_GRANTED = dict.fromkeys(OPTIONAL_PURPOSES, True)
EFFECT = {
    "early_bird": 0.7,
    "night_owl": 0.2,
    "homebody": 0.5,
    "commuter": 0.4,
    "weekend_warrior": 0.6,
}


@pytest.mark.parametrize(
    ("case", "effect", "state_backend"),
    [("effect", EFFECT, "sqlite"), ("null", {}, "sqlite"), ("effect", EFFECT, "postgresql")],
)
async def test_the_estimated_uplift_holds_the_true_effect(
    tmp_path: Path,
    services: LocalServices,
    unique: str,
    case: str,
    effect: dict[str, float],
    state_backend: str,
    request: pytest.FixtureRequest,
) -> None:
    overrides: dict[str, Any] = {}
    if state_backend == "postgresql":
        overrides["state"] = request.getfixturevalue("postgres").hub_settings()
    stack = build_stack(
        tmp_path,
        services,
        devices=160,
        days=1.0,
        seed=5,
        churn=ChurnSpec(monthly_rate=1.0),
        db=f"lab{case}{state_backend[:2]}{unique}",
        hub_overrides=overrides,
    )
    fleet = stack.fleet
    truth = OfferTruth(fleet, OfferSpec(name="loyalty", effect=effect, seed=5))
    start, end = fleet.end_ms, fleet.end_ms + 30 * DAY_MS  # the outcome window (simulated)
    brand_key = (next(iter(stack.bundles.values())).parent / "brand.key").read_bytes()
    subject_of = {pseudonymize(brand_key, 1, c.subject): c.subject for c in fleet.customers}
    # A seeded source for the experiment's id and salt: the run is replayable (the
    # interval's coverage over many assignments and fleets is measured, see above).
    entropy = random.Random(f"lab-{case}").randbytes
    async with Hub(stack.hub_config, entropy=entropy) as hub:
        await hub.ready.wait()
        shown: list[tuple[str, Exposure]] = []

        def household(device: str, exposure: Exposure) -> None:
            """The households' application: a treated customer sees the offer (and
            responds with their persona's hidden effect, OfferTruth)."""
            shown.append((device, exposure))
            truth.expose(subject_of[exposure.twin], start)

        runner = FleetRunner(
            fleet,
            stack.bundles,
            "127.0.0.1",
            services.mosquitto.port,
            tmp_path / "agents",
            on_exposure=household,
        )
        try:
            await runner.run()
            assert await runner.drain(120), "outboxes not drained"
            lab = f"{hub.api_url}/v1/brands/{stack.brand}/lab/experiments"
            new = {
                "offer": {"name": "loyalty", "cost": 5},
                "holdout": 0.5,
                # churned: not seen in the last 12 h before the end (the simulated day
                # ended a day before now; the check-ins come now)
                "outcome": {"days": 30, "quiet_days": 0.5},
            }
            status, created = await send_json("POST", lab, new, stack.token)
            assert status == 201, created
            with state_store_from(stack.hub_config.state) as state:
                arms = Experiments(state=state, clock=SystemClock()).members(
                    stack.brand, created["id"]
                )
            assigned = {subject_of[t]: arm for t, arm in arms.items()}
            assert len(assigned) > 80
            # The hub sent each treated twin's devices the signed offer; every treated
            # customer sees it, no holdout customer does.
            treated = {s for s, arm in assigned.items() if arm == "treated"}
            assert await eventually(lambda: set(truth.exposed) == treated, within=60), (
                len(truth.exposed),
                len(treated),
            )
            assert created["exposed"] == len(treated)
            assert all(e.experiment == created["id"] and e.offer == "loyalty" for _d, e in shown)
            # The end of the window: every customer still there uses a device once.
            now = SystemClock().now_ms()
            for device in fleet.devices:
                last = max(s.seq for s in fleet.signals(device.device_id))
                signals = truth.check_ins(device.device_id, start, end, now, last + 1)
                agent = runner.agents[device.device_id]
                for subject in {s.subject for s in signals}:
                    # a user new to this device accepts its notice first, as in the run
                    if not all(agent.consent_state(subject).values()):
                        agent.set_consent(subject, ALL_GRANTED, "sim-1")
                replies = await agent.ingest_many(signals)
                assert {r.status for r in replies} <= {"accepted"}, replies
            assert await runner.drain(120), "check-ins not drained"
        finally:
            await runner.close()
        status, stopped = await send_json("POST", f"{lab}/{created['id']}/stop", {}, stack.token)
        assert status == 200, stopped
    result: dict[str, Any] = stopped["result"]
    for arm in ("treated", "holdout"):
        mine = [s for s, a in assigned.items() if a == arm]
        assert result[arm]["twins"] == len(mine)
        assert result[arm]["churned"] == sum(truth.churns(s, start, end) for s in mine), arm
    true = truth.true_uplift(assigned, start, end)
    uplift = result["uplift"]
    assert uplift["low"] <= true <= uplift["high"], (case, uplift, true)
    if case == "null":
        assert true == 0.0
        assert uplift["low"] <= 0.0 <= uplift["high"]
    else:
        assert true > 0.1  # a real effect to find
