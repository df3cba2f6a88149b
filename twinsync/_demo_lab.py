"""The demo's strategy-lab experiment: one short experiment run to a finished result.

After the simulated day, the hub splits the twins into treated and holdout
(``POST .../lab/experiments``) and sends the treated twins' devices the signed offer;
the agents hand it to the simulated households (``DemoLab.household``) and the
customers respond with a hidden effect per persona (firmware_sim's ``OfferTruth``).
Every customer still there 30 simulated days later uses a device once (stamped now),
those who left send nothing; the experiment is stopped and its result printed beside
the truth. With the realistic fleet's churn (2 % a month) few customers leave in 30
days, so the
interval is wide: that is what an experiment on a small fleet honestly says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from cloud_hub import Hub
from cloud_hub.store import Experiments, state_store_from
from edge_agent import Exposure
from firmware_sim import DAY_MS, Fleet, FleetRunner, OfferSpec, OfferTruth
from protocol import OPTIONAL_PURPOSES, SystemClock, pseudonymize

__all__ = ["DEMO_EFFECT", "DemoLab"]

#: the offer's hidden true effect per persona (the share of would-be churners it keeps)
DEMO_EFFECT = {
    "early_bird": 0.6,
    "night_owl": 0.2,
    "homebody": 0.5,
    "commuter": 0.3,
    "weekend_warrior": 0.4,
}
_GRANTED = dict.fromkeys(OPTIONAL_PURPOSES, True)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


class DemoLab:
    """The demo's experiment: the households' side (:meth:`household`, given to the
    fleet runner, sees the offers the agents hand on) and the run (:meth:`run`)."""

    def __init__(self, fleet: Fleet, bundles: dict[str, Path]) -> None:
        self.fleet = fleet
        self.truth = OfferTruth(fleet, OfferSpec(name="loyalty discount", effect=DEMO_EFFECT))
        brand_key = (next(iter(bundles.values())).parent / "brand.key").read_bytes()
        self._subject_of = {
            pseudonymize(brand_key, 1, c.subject): c.subject for c in fleet.customers
        }
        #: the outcome window (simulated): the 30 days after the simulated day
        self.start, self.end = fleet.end_ms, fleet.end_ms + 30 * DAY_MS

    def household(self, _device: str, exposure: Exposure) -> None:
        """A device's application shows the offer: the customer responds with their
        persona's hidden effect."""
        subject = self._subject_of.get(exposure.twin)
        if subject is not None:
            self.truth.expose(subject, self.start)

    async def run(
        self, hub: Hub, runner: FleetRunner, say: Callable[[str], None]
    ) -> dict[str, Any]:
        """Run the experiment through the hub's API, the offer downlink and the running
        agents; print and return the finished experiment."""
        fleet, truth, start, end = self.fleet, self.truth, self.start, self.end
        brand = fleet.spec.brand
        _key, token = hub.api_keys.create(brand, "demo-lab", ["read", "write"])
        lab = f"{hub.api_url}/v1/brands/{brand}/lab/experiments"
        new = {
            "offer": {"name": "loyalty discount", "cost": 5},
            "holdout": 0.5,
            "outcome": {"metric": "churned", "days": 30, "quiet_days": 0.5},
        }
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(lab, json=new) as resp:
                resp.raise_for_status()
                created = await resp.json()
            with state_store_from(hub.config.state) as state:
                arms = Experiments(state=state, clock=SystemClock()).members(brand, created["id"])
            assigned = {self._subject_of[t]: a for t, a in arms.items() if t in self._subject_of}
            treated = {s for s, a in assigned.items() if a == "treated"}
            # The offers travel as signed downlinks: wait (bounded) until they arrived.
            for _ in range(300):
                if treated <= set(truth.exposed):
                    break
                await asyncio.sleep(0.1)
            now = SystemClock().now_ms()
            for device in fleet.devices:
                agent = runner.agents.get(device.device_id)
                if agent is None:
                    continue
                last = max((s.seq for s in fleet.signals(device.device_id)), default=0)
                signals = truth.check_ins(device.device_id, start, end, now, last + 1)
                for subject in {s.subject for s in signals}:
                    if not all(agent.consent_state(subject).values()):
                        agent.set_consent(subject, _GRANTED, "sim-1")
                await agent.ingest_many(signals)
            await runner.drain(60)
            async with session.post(f"{lab}/{created['id']}/stop", json={}) as resp:
                resp.raise_for_status()
                done: dict[str, Any] = await resp.json()
        result = done["result"]
        uplift = result["uplift"] or {}
        true = truth.true_uplift(assigned, start, end) if assigned else 0.0
        say(
            f"Experiment {done['id']} ({done['offer']['name']}): {done['assigned']['treated']} "
            f"treated ({len(truth.exposed)} shown the offer on a device), "
            f"{done['assigned']['holdout']} holdout, finished"
        )
        say(
            f"  churned in 30 days: treated {_pct(result['treated']['rate'])}, holdout "
            f"{_pct(result['holdout']['rate'])}; uplift {_pct(uplift.get('value'))} "
            f"[{_pct(uplift.get('low'))}, {_pct(uplift.get('high'))}] (the simulator's "
            f"true effect on these customers: {_pct(true)})"
        )
        return done
