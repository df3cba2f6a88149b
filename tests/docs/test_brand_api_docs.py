"""docs/brand-api.md's examples run as written against a real hub.

A hub runs in-process on the session's mosquitto and InfluxDB, serving brand ``acme``
(the brand the examples use) with device ``coffee-0001``, which sent the twins of two
customers (counters, segments, churn scores). Every ``python`` block of the page runs,
in page order, as its own process with this venv's interpreter, in the checkout, with
``TWINSYNC_API_KEY`` an all-scopes key of ``acme``. Substitutions, as a reader would make
them: ``http://localhost:8080`` → this hub; the webhook URL
``https://crm.example.com/twinsync-events`` → a local receiver; the receiver's port
``9000`` → a free one. The receiver example runs in the background with the secret the
webhook example printed, and must get and verify the events the privacy examples cause.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _fakes import FakeDevice, now_hlc
from _markdown import REPO, blocks
from _poll import eventually

from cloud_hub import SCOPES, ApiKeys, Hub, load_hub_config, provision_devices
from twinsync.services import LocalServices, free_port, wait_port

DOC = REPO / "docs/brand-api.md"
BRAND = "acme"
DEVICE = "coffee-0001"
HUB_URL = "http://localhost:8080"
WEBHOOK_URL = "https://crm.example.com/twinsync-events"


class Env:
    def __init__(self, hub: Hub, token: str, twins: dict[str, str], device: FakeDevice) -> None:
        self.hub, self.token, self.twins, self.device = hub, token, twins, device


@pytest.fixture
async def env(tmp_path: Path, services: LocalServices, unique: str) -> AsyncIterator[Env]:
    config = load_hub_config(
        None,
        {
            "mqtt": {
                "brands": [BRAND],
                "port": services.mosquitto.port,
                "client_id": f"hub-brand-api-{unique}",
                "shared_group": f"g{unique}",
            },
            "influx": {
                **services.influxd.hub_settings(f"brandapi{unique}"),
                "batch_max_wait_ms": 20,
            },
            "api": {"port": 0},
            "registry": {"path": str(tmp_path / "registry.sqlite")},
            "keys": {"secrets_dir": str(tmp_path / "secrets")},
            "models": {"dir": str(tmp_path / "models")},
            # The receiver listens on loopback over http: the operator's allow-list.
            "webhooks": {"allow": ["127.0.0.1"], "require_https": False},
        },
        environ={},
    )
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        BRAND,
        [(DEVICE, "coffee")],
        tmp_path / "bundles",
        "127.0.0.1",
        services.mosquitto.port,
    )
    _key, token = ApiKeys(config.registry.path).create(BRAND, "docs", SCOPES)
    device = FakeDevice(bundles[DEVICE].parent, BRAND, DEVICE, services.mosquitto.port)
    try:
        async with Hub(config) as hub:
            await hub.ready.wait()
            twins = {}
            for seq, (subject, brews) in enumerate(
                (("ann@example.com", 2), ("bob@example.com", 9)), 1
            ):
                twin = device.twin(subject)
                twins[subject] = twin
                ops = [
                    (now_hlc(-3000), "coffee.brews_total", brews),
                    (now_hlc(-3000), "coffee.segment", 1),
                    (now_hlc(-3000), "coffee.segment_model", "segment-coffee@1"),
                    (now_hlc(-2000), "coffee.segment", 3),
                    (now_hlc(-2000), "coffee.churn_risk", 0.25),
                    (now_hlc(-2000), "coffee.churn_model", "churn-coffee@1"),
                ]
                if brews == 2:  # ann: the behaviour tags example
                    ops += [
                        (now_hlc(-2000), "coffee.tag_evening_routine", True),
                        (now_hlc(-2000), "coffee.tags_ref", "tags@1"),
                    ]
                device.publish(device.delta(seq, {twin: ops}))
                await device.wait_acked({seq})
            yield Env(hub, token, twins, device)
    finally:
        device.close()


async def _lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode().strip())


async def test_every_example_of_the_brand_api_page_runs_against_a_real_hub(env: Env) -> None:
    """Each example exits 0 and prints what the hub holds; the receiver verifies the
    erasure, objection, rectification and consent events the hub POSTs to it."""
    examples = [b for b in blocks(DOC) if b.lang == "python"]
    assert len(examples) >= 10
    port = free_port()
    subs = (
        (HUB_URL, env.hub.api_url),
        (WEBHOOK_URL, f"http://127.0.0.1:{port}/twinsync-events"),
        ('("127.0.0.1", 9000)', f'("127.0.0.1", {port})'),
    )
    base_env = {"PATH": os.environ["PATH"], "TWINSYNC_API_KEY": env.token}
    secret, outputs = "", {}
    receiver: asyncio.subprocess.Process | None = None
    reading: asyncio.Task[None] | None = None
    received: list[str] = []
    try:
        for block in examples:
            code = block.code
            for old, new in subs:
                code = code.replace(old, new)
            if "serve_forever" in code:
                assert secret, "the receiver comes after the webhook is registered"
                receiver = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    code,
                    cwd=REPO,
                    env={**base_env, "TWINSYNC_WEBHOOK_SECRET": secret},
                    stdout=asyncio.subprocess.PIPE,
                )
                assert receiver.stdout is not None
                reading = asyncio.create_task(_lines(receiver.stdout, received))
                await asyncio.to_thread(wait_port, port, 30)
                continue
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", code],
                cwd=REPO,
                env=base_env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, f"docs/brand-api.md:{block.line}\n{done.stderr}"
            outputs[block.line] = done.stdout
            if "set_webhook" in code:
                secret = done.stdout.splitlines()[0]
            if "create_trigger" in code:
                # ann's churn risk crosses the rule's threshold: the stream example gets it
                ann = env.twins["ann@example.com"]
                env.device.publish(
                    env.device.delta(3, {ann: [(now_hlc(), "coffee.churn_risk", 0.8)]})
                )
                await env.device.wait_acked({3})
        assert receiver is not None, "the page shows no receiver"
        events = ("consent", "rectification", "objection", "erasure")

        def got_all() -> bool:
            return {line.split()[0] for line in received if line} >= set(events)

        assert await eventually(got_all, within=60), received
    finally:
        if receiver is not None:
            receiver.terminate()
            await receiver.wait()
        if reading is not None:
            await reading  # the receiver's output ends with it
    text = "\n".join(outputs.values())
    ann, bob = env.twins["ann@example.com"], env.twins["bob@example.com"]
    assert ann in text
    assert bob in text
    assert "404 twin_not_found" in text
    assert "wrong_brand this key belongs to brand 'acme'" in text
    assert "points erased, receipt signed by" in text
    assert "churn-coffee@1" in text
    # Segments: both twins moved from 1 to 3 under model 1 (entered an hour ago: 2).
    assert "sizes segment-coffee@1 3 2 of 2" in text
    assert "entered 2 moved 0 stayed 0" in text
    assert "profile segment-coffee@1 2 twins" in text
    assert "segment 3: 2 twins (100%) (under 10 twins: no profile)" in text
    assert "alerts 0" in text
    assert "segment-coffee@1 3 100% fewer than 3 baseline days with twins: no verdict" in text
    assert f"churn_risk {ann} 0.25 -> 0.8" in text  # the trigger stream's event
    assert f"evening routine: ['{ann}']" in text
    assert "evening_routine True tags@1 share_evening >= 0.5" in text
    assert "after suppression: []" in text
