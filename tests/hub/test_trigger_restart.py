"""At least once across a crash: a hub process SIGKILLed after it stored trigger events
and before it could deliver them (the brand's endpoint was failing) sends them after a
restart, each once, in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from _fakes import FakeDevice, now_hlc, send_json
from _poll import eventually
from test_hub_faults import _env, _run_hub
from test_triggers import _Receiver

from cloud_hub import SCOPES, ApiKeys
from cloud_hub.privacy import verify_signature
from twinsync.services import LocalServices, free_port


async def test_events_stored_before_a_sigkill_are_sent_after_the_restart(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique)
    c = env.config
    token = ApiKeys(c.registry.path).create(env.brand, "t", SCOPES)[1]
    api_port = free_port()
    cfg_path = tmp_path / "hub.toml"
    cfg_path.write_text(
        f"""[mqtt]
port = {services.mosquitto.port}
client_id = "hubt-{unique}"
shared_group = "gt{unique}"
{services.influxd.hub_toml(c.influx.database)}[api]
port = {api_port}
{env.state_toml(tmp_path)}[keys]
secrets_dir = "{c.keys.secrets_dir}"
[webhooks]
allow = ["127.0.0.1"]
require_https = false
"""
    )
    dev = FakeDevice(env.bundles["dev-0"].parent, env.brand, "dev-0", services.mosquitto.port)
    proc = await _run_hub(cfg_path, api_port)
    async with _Receiver(fail=10**6) as receiver:  # the endpoint fails until the restart
        try:
            rule = {"name": "seg", "kind": "segment_change", "webhook": receiver.url}
            url = f"http://127.0.0.1:{api_port}/v1/brands/{env.brand}/triggers"
            status, created = await send_json("POST", url, rule, token)
            assert status == 201, created
            twin = dev.twin("k")
            for seq in (1, 2, 3):
                dev.publish(dev.delta(seq, {twin: [(now_hlc(), "coffee.segment", seq)]}))
                await dev.wait_acked({seq}, within=30)
            # Stored (acked) and tried: the first event failed, the others wait behind it.
            assert await eventually(lambda: len(receiver.attempts) >= 1, within=20)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            receiver.fail = 0
            proc = await _run_hub(cfg_path, api_port)
            # Due again after its backoff (or, killed mid-send, its 60 s lease): all three arrive.
            assert await eventually(lambda: len(receiver.accepted) == 3, within=90)
            events = []
            for body, header in receiver.accepted:
                assert verify_signature(created["secret"], body, header)
                events.append(json.loads(body))
            assert [(e["from"], e["to"]) for e in events] == [(None, 1), (1, 2), (2, 3)]
            assert len({e["event_id"] for e in events}) == 3
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(15) is not None
            except subprocess.TimeoutExpired:
                proc.kill()
            dev.close()
