"""TLS end to end with a throwaway CA: agent → mosquitto (TLS listener) → hub, and the
hub's API over HTTPS. Plain connections to the TLS ports are refused."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from _poll import eventually
from _tls import make_pki
from hub_env import HubEnv

from cloud_hub import Hub, load_hub_config
from edge_agent import Agent, load_config
from protocol import SignalIn
from twinsync.services import Mosquitto, free_port


async def _plain_http_status(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url) as r:
            return r.status
    except aiohttp.ClientError:
        return None


def _plain_mqtt_connects(port: int) -> bool:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        client.connect("127.0.0.1", port, keepalive=5)
    except OSError:
        return False
    client.loop_start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and not client.is_connected():
            time.sleep(0.05)
        return client.is_connected()
    finally:
        client.loop_stop()
        client.disconnect()


async def test_agent_broker_hub_and_api_over_tls(hub_env: HubEnv, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki.ca}\ncertfile {pki.cert}\nkeyfile {pki.key}\ntls_version tlsv1.2\n",
    )
    broker.start()
    try:
        data = hub_env.config.model_dump()
        data["mqtt"].update(port=port, tls=True, ca_file=str(pki.ca))
        data["api"].update(tls_cert_file=str(pki.cert), tls_key_file=str(pki.key))
        config = load_hub_config(None, data, environ={})
        agent_config = load_config(
            hub_env.bundles["dev-0"],
            {
                "mqtt": {"port": port, "tls": True, "ca_file": str(pki.ca)},
                "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                "models": {"enabled": False},
            },
            environ={},
        )
        async with Hub(config) as hub, Agent(agent_config) as agent:
            await hub.ready.wait()
            assert hub.api_url.startswith("https://")
            now = int(time.time() * 1000)
            await agent.ingest(SignalIn(seq=1, ts=now, subject="ann", name="coffee.brew", value=2))
            assert await agent.drained(15)
            context = ssl.create_default_context(cafile=str(pki.ca))
            headers = {"Authorization": f"Bearer {hub_env.token}"}
            url = f"{hub.api_url}/v1/brands/{hub_env.brand}/twins"
            async with aiohttp.ClientSession(headers=headers) as session:

                async def listed() -> bool:
                    async with session.get(url, ssl=context) as r:
                        return r.status == 200 and len((await r.json())["twins"]) == 1

                assert await eventually(listed, within=10)
                # A client that does not trust the CA is refused by its own TLS check...
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    async with session.get(url):
                        pass
                # ... and plain HTTP to the HTTPS port gets no API answer.
                assert await _plain_http_status(session, url.replace("https", "http")) is None
        # Plain MQTT to the TLS listener never gets a CONNACK.
        assert not await asyncio.to_thread(_plain_mqtt_connects, port)
    finally:
        broker.stop()
