"""The strategy lab (``.../lab/simulate``, ``.../lab/experiments``) on a real hub,
mosquitto and InfluxDB, with the shared state on SQLite and PostgreSQL.

Eighty twins are sent by a device (churn risk, coffee segment 0-3, last seen an hour
ago). A forecast's reach, expected saved churners, cost and split by segment are the
numbers computed here from what was sent, and the fairness rule flags the segment a rule
leaves out. An experiment splits every segment in the asked share, leaves out a twin
whose customer objected; the outcome is read from the twins (those sent again after the
start stayed, the others churned); uplift and effect are the statistics of those counts;
the effect feeds a forecast; an erased twin leaves the counts. Then the attacks: another
brand's key, a device's credentials, a key without ``write``, a replayed stop, hostile
sizes and malformed bodies: each refused with a clear error and nothing changed.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from hub_env import HubEnv, both_stores

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.api import MAX_WHERE
from cloud_hub.store import Experiments, assign
from protocol import SystemClock

N = 80
HOUR = 3_600_000


def risk(i: int) -> float:
    return round((i % 10) / 10 + 0.05, 2)


class Lab:
    def __init__(self, hub: Hub, env: HubEnv, device: FakeDevice, twins: list[str]) -> None:
        self.hub, self.env, self.device, self.twins = hub, env, device, twins
        self.segment = {t: i % 4 for i, t in enumerate(twins)}
        self.risk = {t: risk(i) for i, t in enumerate(twins)}
        self.seq = N

    def url(self, path: str) -> str:
        return f"{self.hub.api_url}/v1/brands/{self.env.brand}/lab{path}"

    async def post(self, path: str, body: object, status: int, token: str | None = None) -> Any:
        got, answer = await send_json("POST", self.url(path), body, token or self.env.token)
        assert got == status, answer
        return answer

    async def get(self, path: str, status: int = 200, token: str | None = None) -> Any:
        return await get_json(self.url(path), status, token or self.env.token)

    async def touch(self, twins: list[str]) -> None:
        """The twins are seen again now (a use after the experiment started)."""
        first = self.seq + 1
        for twin in twins:
            self.seq += 1
            ops = [(now_hlc(), "coffee.brews_total", self.seq)]
            self.device.publish(self.device.delta(self.seq, {twin: ops}))
        await self.device.wait_acked(set(range(first, self.seq + 1)))

    def members(self, experiment: str) -> dict[str, str]:
        with self.env.state() as state:
            return Experiments(state=state, clock=SystemClock()).members(self.env.brand, experiment)


@pytest.fixture
async def lab(hub: Hub, hub_env: HubEnv) -> Any:
    device = FakeDevice(
        hub_env.bundles["dev-0"].parent, hub_env.brand, "dev-0", hub_env.services.mosquitto.port
    )
    try:
        twins = [device.twin(f"customer-{i}@example.com") for i in range(N)]
        at = now_hlc(-HOUR)
        for i, twin in enumerate(twins):
            ops: list[tuple[int, str, object]] = [
                (at, "coffee.churn_risk", risk(i)),
                (at, "coffee.segment", i % 4),
                (at, "coffee.brews_total", i),
            ]
            device.publish(device.delta(i + 1, {twin: ops}))
        await device.wait_acked(set(range(1, N + 1)))
        yield Lab(hub, hub_env, device, twins)
    finally:
        device.close()


@both_stores
async def test_a_forecast_is_the_sum_over_the_targeted_twins(lab: Lab) -> None:
    """Reach, expected saved churners (risk x effect), cost and cost per saved churner
    are what the sent values give; every segment of every product is split; a rule that
    leaves segment 2 out flags it under-reached and the others over-reached."""
    body = {"where": "coffee.segment != 2", "offer": {"name": "10% off", "cost": 5}}
    got = await lab.post("/simulate", {**body, "effect": 0.3}, 200)
    targeted = [t for t in lab.twins if lab.segment[t] != 2]
    saved = sum(lab.risk[t] for t in targeted) * 0.3
    assert got["population"] == N
    assert got["reach"] == len(targeted) == 60
    assert got["unscored"] == 0
    assert got["expected_saved"]["value"] == pytest.approx(saved)
    assert got["expected_saved"]["low"] == got["expected_saved"]["high"] == pytest.approx(saved)
    assert got["cost"] == 300
    assert got["cost_per_saved"] == pytest.approx(300 / saved)
    assert got["effect"] == {"value": 0.3, "low": 0.3, "high": 0.3, "source": "assumed"}
    split = {s["segment"]: s for s in got["segments"] if s["product"] == "coffee"}
    assert sorted(split) == [0, 1, 2, 3]
    assert split[2]["reached"] == 0
    assert "under_reached" in split[2]["flags"]
    assert "less_benefit" in split[2]["flags"]
    for s in (0, 1, 3):
        assert split[s]["members"] == split[s]["reached"] == 20
        assert split[s]["reach_ratio"] == pytest.approx(1 / 0.75)
        assert "over_reached" in split[s]["flags"]
    assert got["flagged"] == 4
    # Everyone targeted: nothing to flag, and a looser ratio is honoured.
    fair = await lab.post("/simulate", {**body, "where": None, "effect": 0.3}, 200)
    assert fair["reach"] == N
    assert fair["flagged"] == 0
    loose = await lab.post("/simulate", {**body, "effect": 0.3, "fairness_ratio": 0.5}, 200)
    assert loose["fairness"]["ratio"] == 0.5
    assert {s["segment"] for s in loose["segments"] if s["flags"]} == {2}


@both_stores
async def test_an_experiment_measures_its_outcome_from_the_twins(lab: Lab) -> None:
    """Assignment splits every segment in the asked share and leaves out a customer who
    objected; the outcome is read from the index (twins seen again after the start
    stayed); uplift and effect are the statistics of the counts; the learnt effect feeds
    a forecast; an erased member leaves the counts; a replayed stop changes nothing."""
    objected = "customer-5@example.com"
    status, _ = await send_json(
        "POST",
        f"{lab.hub.api_url}/v1/brands/{lab.env.brand}/privacy/objection",
        {"subject": objected},
        lab.env.token,
    )
    assert status == 200
    new = {
        "offer": {"name": "loyalty", "cost": 2},
        "holdout": 0.5,
        # churned: not seen in the last 15 minutes before the end (the others were seen
        # an hour before the start)
        "outcome": {"days": 1, "quiet_days": 15 / 1440},
    }
    created = await lab.post("/experiments", new, 201)
    experiment = created["id"]
    assert created["status"] == "running"
    assert created["excluded"] == 1
    assert created["assigned"] == {"treated": 40, "holdout": 39} or created["assigned"] == {
        "treated": 39,
        "holdout": 40,
    }
    members = lab.members(experiment)
    assert lab.device.twin(objected) not in members
    assert len(members) == N - 1
    for s in range(4):
        held = [t for t, arm in members.items() if lab.segment[t] == s and arm == "holdout"]
        size = sum(1 for t in members if lab.segment[t] == s)
        assert abs(len(held) - size / 2) <= 1, s  # stratified: every segment split
    assert created["exposed"] == sum(1 for a in members.values() if a == "treated")

    # A running experiment's effect is not learnt yet.
    body = {"offer": {"name": "loyalty", "cost": 2}, "effect": f"learnt:{experiment}"}
    refused = await lab.post("/simulate", body, 409)
    assert refused["error"]["code"] == "experiment_running"

    # Who stays: every holdout twin of an even index, every treated one but every 4th.
    index = {t: i for i, t in enumerate(lab.twins)}
    stay = [
        t
        for t, arm in members.items()
        if (arm == "holdout" and index[t] % 2 == 0) or (arm == "treated" and index[t] % 4 != 0)
    ]
    await lab.touch(stay)
    stopped = await lab.post(f"/experiments/{experiment}/stop", {}, 200)
    assert stopped["status"] == "finished"
    result = stopped["result"]
    arms = {a: [t for t, m in members.items() if m == a] for a in ("treated", "holdout")}
    churned = {a: sum(1 for t in ts if t not in stay) for a, ts in arms.items()}
    for arm in ("treated", "holdout"):
        assert result[arm]["twins"] == len(arms[arm])
        assert result[arm]["churned"] == churned[arm]
    p_t = churned["treated"] / len(arms["treated"])
    p_h = churned["holdout"] / len(arms["holdout"])
    uplift = result["uplift"]
    assert uplift["method"] == "newcombe"
    assert uplift["value"] == pytest.approx(p_h - p_t)
    assert uplift["low"] < uplift["value"] < uplift["high"]
    assert uplift["low"] > 0  # 1/2 against 1/4 of ~40 twins each: a clear effect
    effect = result["effect"]
    assert effect["value"] == pytest.approx(1 - p_t / p_h)
    assert effect["low"] < effect["value"] < effect["high"]

    # The learnt effect feeds a forecast, interval and all.
    learnt = await lab.post("/simulate", body, 200)
    assert learnt["effect"] == {
        "value": effect["value"],
        "low": effect["low"],
        "high": effect["high"],
        "source": f"learnt:{experiment}",
    }
    # (the customer who objected has no churn risk in the index any more)
    risk_sum = sum(r for t, r in lab.risk.items() if t != lab.device.twin(objected))
    assert learnt["expected_saved"]["low"] == pytest.approx(risk_sum * effect["low"])

    # A replayed stop answers the frozen result; the list shows the same.
    again = await lab.post(f"/experiments/{experiment}/stop", {}, 200)
    assert again == stopped
    listed = await lab.get("/experiments")
    assert listed["experiments"] == [stopped]

    # An erased member leaves the experiment (and its counts from then on).
    gone = next(t for t in arms["holdout"] if t in stay)
    subject = f"customer-{index[gone]}@example.com"
    status, _ = await send_json(
        "POST",
        f"{lab.hub.api_url}/v1/brands/{lab.env.brand}/privacy/erasure",
        {"subject": subject},
        lab.env.token,
    )
    assert status == 200
    assert gone not in lab.members(experiment)

    # Deleted: answered as it was, then gone with its assignment (404 from then on).
    got, deleted = await send_json(
        "DELETE", lab.url(f"/experiments/{experiment}"), None, lab.env.token
    )
    assert got == 200, deleted
    assert deleted["id"] == experiment
    assert lab.members(experiment) == {}
    assert (await lab.get(f"/experiments/{experiment}", 404))["error"]["code"] == (
        "unknown_experiment"
    )
    assert (await lab.post("/simulate", body, 404))["error"]["code"] == "unknown_experiment"
    assert (await lab.get("/experiments"))["experiments"] == []


def test_assignment_is_keyed_stratified_and_the_same_everywhere() -> None:
    """The same salt gives the same arms whatever the order the twins come in; another
    salt other arms; every stratum is split in the asked share (to one twin)."""
    twins = [(f"1-{i:032x}", f"coffee={i % 3}") for i in range(300)]
    a = assign(b"k" * 16, "exp-000000000001", twins, 0.3)
    b = assign(b"k" * 16, "exp-000000000001", list(reversed(twins)), 0.3)
    c = assign(b"x" * 16, "exp-000000000001", twins, 0.3)
    assert a == b
    assert a != c
    for s in range(3):
        held = sum(1 for t, st in twins if st == f"coffee={s}" and a[t] == "holdout")
        assert math.floor(0.3 * 100) <= held <= math.ceil(0.3 * 100)


@both_stores
async def test_attacks_are_refused_and_change_nothing(
    lab: Lab, hub_env: HubEnv, tmp_path: Path
) -> None:
    """Another brand's key (403 wrong_brand), a device's broker credentials (401), a key
    without ``write`` (403 missing_scope), hostile sizes and malformed campaigns (400 /
    413, each with its code), unknown experiments (404): nothing is created."""
    env = hub_env
    with env.state() as state:
        provision_devices(
            state,
            env.config.keys.secrets_dir,
            "zzother",
            [("o-1", "coffee")],
            tmp_path / "other",
            "127.0.0.1",
            env.services.mosquitto.port,
        )
        keys = ApiKeys(state)
        _k, other = keys.create("zzother", "x", SCOPES)
        _k, read_only = keys.create(env.brand, "x", ["read"])
    device_password = (env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    new = {"offer": {"name": "x", "cost": 1}, "outcome": {"days": 1}}
    mine = await lab.post("/experiments", new, 201)
    for token, status, code in (
        (other, 403, "wrong_brand"),
        (device_password, 401, "bad_key"),
        (read_only, 403, "missing_scope"),
    ):
        answer = await lab.post("/experiments", new, status, token)
        assert answer["error"]["code"] == code
        answer = await lab.post(f"/experiments/{mine['id']}/stop", {}, status, token)
        assert answer["error"]["code"] == code
        got, answer = await send_json("DELETE", lab.url(f"/experiments/{mine['id']}"), None, token)
        assert (got, answer["error"]["code"]) == (status, code)
    # Still there, still running: nothing those keys sent changed it.
    assert (await lab.get(f"/experiments/{mine['id']}"))["status"] == "running"
    got, _ = await send_json("DELETE", lab.url(f"/experiments/{mine['id']}"), None, env.token)
    assert got == 200
    # Another brand's key cannot read or forecast over this brand's twins either.
    campaign = {"offer": {"name": "x", "cost": 1}, "effect": 0.5}
    answer = await lab.post("/simulate", campaign, 403, other)
    assert answer["error"]["code"] == "wrong_brand"
    bad: list[tuple[object, str]] = [
        ({**campaign, "where": "x" * (MAX_WHERE + 1)}, "bad_where"),
        ({**campaign, "where": "coffee.segment = = 1"}, "bad_where"),
        ({**campaign, "offer": {"name": "n" * 10_000, "cost": 1}}, "bad_offer"),
        ({**campaign, "offer": {"name": "x", "cost": -1}}, "bad_offer"),
        ({**campaign, "offer": {"name": "x", "cost": 1e300}}, "bad_offer"),
        ({**campaign, "effect": 1.5}, "bad_effect"),
        ({**campaign, "effect": "learnt:../../etc"}, "bad_effect"),
        ({**campaign, "effect": True}, "bad_effect"),
        ({**campaign, "fairness_ratio": 0.1}, "bad_fairness_ratio"),
        ({**campaign, "extra": 1}, "bad_campaign"),
        ([1, 2, 3], "bad_json"),
    ]
    for body, code in bad:
        answer = await lab.post("/simulate", body, 400)
        assert answer["error"]["code"] == code, body
    for body, code in (
        ({**new, "holdout": 1.0}, "bad_holdout"),
        ({**new, "outcome": {"days": 1e9}}, "bad_days"),
        ({**new, "outcome": {"metric": "revenue"}}, "bad_outcome"),
        ({**new, "outcome": {"days": 1, "quiet_days": 2}}, "bad_quiet_days"),
    ):
        answer = await lab.post("/experiments", body, 400)
        assert answer["error"]["code"] == code, body
    unknown = await lab.post("/simulate", {**campaign, "effect": "learnt:exp-0123456789ab"}, 404)
    assert unknown["error"]["code"] == "unknown_experiment"
    assert (await lab.get("/experiments/exp-0123456789ab", 404))["error"]["code"] == (
        "unknown_experiment"
    )
    assert (await lab.get("/experiments/..%2Fx", 400))["error"]["code"] == "bad_experiment"
    huge = {"offer": {"name": "x", "cost": 1}, "effect": 0.5, "where": "y" * (2 * 1024 * 1024)}
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    data = io.BytesIO(json.dumps(huge).encode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(lab.url("/simulate"), data=data, headers=headers) as resp,
    ):
        assert resp.status == 413
    assert (await lab.get("/experiments"))["experiments"] == []
