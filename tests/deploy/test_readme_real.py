"""README.md, "Running it for real", followed literally: a device's data reaches the API.

The shell blocks of that README section are read from README.md (never a copy) and each
command is typed, as written, into a bash session, one for the hub host and one for the
device, in a fresh copy of the repository's files (what a checkout holds). Only what a
real operator substitutes is substituted:

Substitution table (README text -> what the test uses, and why):

- ``/etc/``, ``/var/lib/`` -> ``<tmp>/hub/etc/``, ``<tmp>/hub/var/lib/`` in the hub's
  shell, ``<tmp>/device/...`` in the device's: no root file system to write to.
- ``/opt/twinsync`` -> ``<tmp>/opt/twinsync``, one venv for both hosts: the device's
  ``pip install '.[edge]'`` adds to the hub's venv instead of making another (~10 s less).
- ``mqtt.example.com``, ``8883`` -> ``127.0.0.1``, the test broker's TLS port: the
  broker's public name and device listener.
- ``127.0.0.1:8080`` -> ``127.0.0.1:<free port>``: the hub's API port (also set in the
  hub.toml edit).
- InfluxDB "with the database and the hub's user" -> a private influxd (authentication
  on) on which deploy/README.md's statements ran, with a random password for the hub's
  user; ``'the hub password'`` -> that password.
- "edit /etc/twinsync/hub.toml" -> the README's list of edits, with this test's values:
  ``[influx] url``; ``[mqtt]`` host/port of the broker's loopback listener, ``username``
  = ``client_id``, ``password_file = "secrets/mqtt-hub.password"``; ``[api] port``.
- "start mosquitto with deploy/mosquitto/mosquitto.conf" -> that file, with its ports,
  certificate, data and log paths pointed at the test's own (a throwaway CA made here)
  and ``user root`` when the test runs as root.
- "add ``tls = true`` (and ``ca_file``) to the bundle's ``[mqtt]``" -> that edit, with
  the throwaway CA.
- ``--owner mosquitto --group mosquitto`` -> left out when the test does not run as
  root (only root may give a file to another user; the test's broker runs as the test's
  user then).
- ``twinsync edge run ...`` -> the same, in the background: it runs until stopped.

Commands run in a ``{ ...; } > out.N`` group so their output is kept apart (it changes
nothing they do); after a command that starts a process in the background the test
records ``$!`` so it can stop what it started. The firmware's part (a signal sent to
the agent's ingest socket) is done by the test: it is not an operator command.

Cost: copying the checkout ~1 s, the venv with the ``hub`` and ``edge`` extras ~15 s
from pip's configured index and cache, the rest ~10 s.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _markdown import REPO, Block, Command, commands, section_blocks
from _shell import Shell, backgrounded, checkout, influx_setup, set_toml
from _tls import make_pki

from protocol import pseudonymize
from twinsync.services import Influxd, free_port, wait_port

README = REPO / "README.md"
SECTION = "Running it for real"
SUBJECT = "ann@example.com"
#: commands that run until stopped; started in the background
LONG_RUNNING = re.compile(r"\btwinsync (hub|edge) run\b")


class Operator:
    """Follows the README: substitutes what an operator substitutes, does their edits."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        # The operator's InfluxDB: authentication on, the database and the hub's user
        # made with deploy/README.md's statements.
        self.influxd = Influxd(tmp / "influxd")
        self.influxd.start()
        self.influx_password = secrets.token_hex(16)
        try:
            influx_setup(self.influxd, {"twinsync": self.influx_password})
        except BaseException:
            self.influxd.stop()
            raise
        self.checkout = checkout(tmp / "checkout")
        self.roots = {"hub": tmp / "hub", "device": tmp / "device"}
        self.shells = {name: Shell(name, self.checkout, tmp) for name in ("hub", "device")}
        self.api_port, self.mqtt_port, self.tls_port = free_port(), free_port(), free_port()
        self.pki = make_pki(tmp / "pki")
        self.broker: subprocess.Popen[bytes] | None = None
        self.outputs: dict[str, list[str]] = {}
        self.socket: str | None = None

    def substitute(self, text: str, host: str) -> str:
        root = self.roots[host]
        for old, new in (
            ("/etc/", f"{root}/etc/"),
            ("/var/lib/", f"{root}/var/lib/"),
            ("/opt/twinsync", f"{self.tmp}/opt/twinsync"),
            ("mqtt.example.com", "127.0.0.1"),
            ("127.0.0.1:8080", f"127.0.0.1:{self.api_port}"),
            ("8883", str(self.tls_port)),
            ("'the hub password'", f"'{self.influx_password}'"),
        ):
            text = text.replace(old, new)
        if os.geteuid() != 0:  # only root may give a file to another user
            text = re.sub(r"[ \t]+--(owner|group) \S+", "", text)
        if LONG_RUNNING.search(text) and not backgrounded(text):
            text = f"{text} &"
        return text

    # -- the operator's edits and the services the README asks for -------------------

    def edit_hub_toml(self) -> None:
        toml = self.roots["hub"] / "etc/twinsync/hub.toml"
        set_toml(toml, "influx", {"url": self.influxd.url})
        client_id = tomllib.loads(toml.read_text())["mqtt"]["client_id"]
        set_toml(
            toml,
            "mqtt",
            {
                "host": "127.0.0.1",
                "port": self.mqtt_port,
                "username": client_id,
                "password_file": "secrets/mqtt-hub.password",
            },
        )
        set_toml(toml, "api", {"port": self.api_port})

    def start_broker(self) -> None:
        conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
        root = self.roots["hub"]
        for old, new in (
            ("/etc/mosquitto/certs/server.crt", str(self.pki.cert)),
            ("/etc/mosquitto/certs/server.key", str(self.pki.key)),
            ("/etc/mosquitto/certs/ca.crt", str(self.pki.ca)),
            ("/etc/mosquitto/", f"{root}/etc/mosquitto/"),
            ("/var/lib/mosquitto/", f"{root}/var/lib/mosquitto/"),
            ("log_dest syslog", "log_dest stdout"),
        ):
            conf = conf.replace(old, new)
        conf = re.sub(
            r"^listener 1883 127\.0\.0\.1$",
            f"listener {self.mqtt_port} 127.0.0.1",
            conf,
            flags=re.M,
        )
        conf = re.sub(r"^listener 8883$", f"listener {self.tls_port} 127.0.0.1", conf, flags=re.M)
        if os.geteuid() == 0:
            # mosquitto started as root switches to the 'mosquitto' user, which cannot
            # read this test's private directories.
            conf += "\nuser root\n"
        (root / "var/lib/mosquitto").mkdir(parents=True, exist_ok=True)
        path = self.tmp / "mosquitto.conf"
        path.write_text(conf)
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = (self.tmp / "mosquitto.log").open("w")
        self.broker = subprocess.Popen([mosquitto, "-c", str(path)], stdout=log, stderr=log)
        try:
            wait_port(self.mqtt_port)
            wait_port(self.tls_port)
        except Exception:
            raise AssertionError((self.tmp / "mosquitto.log").read_text()) from None

    def wait_hub(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{self.api_port}/readyz"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"hub not ready: {self._logs()}")
            time.sleep(0.2)

    def edit_agent_toml(self) -> None:
        set_toml(
            self.roots["device"] / "etc/twinsync/agent.toml",
            "mqtt",
            {"tls": True, "ca_file": str(self.pki.ca)},
        )

    def wait_agent(self, out: Path) -> None:
        deadline = time.monotonic() + 60
        while self.socket is None:
            for line in out.read_text().splitlines():
                if line.startswith("{") and "ingest_socket" in line:
                    self.socket = json.loads(line)["ingest_socket"]
            if time.monotonic() > deadline:
                raise AssertionError(f"agent did not start: {out.read_text()}")
            time.sleep(0.1)

    def firmware_sends(self) -> dict[str, object]:
        """The firmware's part: one signal over the agent's ingest socket."""
        assert self.socket is not None
        signal_in = {
            "seq": 1,
            "ts": int(time.time() * 1000),
            "subject": SUBJECT,
            "name": "coffee.brew",
            "value": 2,
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(self.socket)
            sock.sendall((json.dumps(signal_in) + "\n").encode())
            reply = json.loads(sock.makefile().readline())
        assert reply["status"] == "accepted", reply
        return signal_in

    def _logs(self) -> str:
        return "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("shell-*/out.*"))
        )

    def close(self) -> None:
        for shell in self.shells.values():
            shell.close()
        if self.broker is not None:
            self.broker.terminate()
            self.broker.wait(timeout=20)
        self.influxd.stop()


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    op = Operator(tmp_path)
    try:
        yield op
    finally:
        op.close()


def _host_of(block: Block) -> str:
    return "device" if "'.[edge]'" in block.code else "hub"


def _hooks(op: Operator) -> list[tuple[re.Pattern[str], Callable[[Path], None]]]:
    """What happens after a command, matched on the command as the README writes it."""
    return [
        (re.compile(r"cp \S*hub\.example\.toml \S*/hub\.toml"), lambda _o: op.edit_hub_toml()),
        (re.compile(r"twinsync hub broker-auth .*--out"), lambda _o: op.start_broker()),
        (re.compile(r"twinsync hub run\b"), lambda _o: op.wait_hub()),
        (re.compile(r"cp -r \S+ /etc/twinsync/"), lambda _o: op.edit_agent_toml()),
        (re.compile(r"twinsync edge run\b"), op.wait_agent),
    ]


def _run(op: Operator, host: str, command: Command) -> str:
    text = op.substitute(command.text, host)
    status, output, out = op.shells[host].run(text)
    assert status == 0, f"{command.file}:{command.line} [{host}] {text}\nexit {status}\n{output}"
    for pattern, hook in _hooks(op):
        if pattern.search(command.text):
            hook(out)
    return output


def test_readme_running_it_for_real_works_as_written(operator: Operator) -> None:
    """Every command of the section succeeds as written, and a signal sent to the
    provisioned device's agent shows up, pseudonymized, in the API answers the
    README's curl commands get."""
    blocks = section_blocks(README, SECTION)
    hosts = [_host_of(b) for b in blocks]
    assert set(hosts) == {"device", "hub"}, "the section must cover hub and device"
    check = blocks[-1]
    assert "curl" in check.code
    assert "Authorization: Bearer" in check.code
    for block in blocks[:-1]:
        for command in commands(block):
            _run(operator, _host_of(block), command)
    assert operator.socket is not None, "the README never starts the edge agent"
    sent = operator.firmware_sends()

    device_dir = operator.roots["device"] / "etc/twinsync"
    agent = tomllib.loads((device_dir / "agent.toml").read_text())
    brand, device = agent["device"]["brand"], agent["device"]["id"]
    twin = pseudonymize(
        (device_dir / "brand.key").read_bytes(), agent["pseudonym"]["epoch"], SUBJECT
    )
    # The hub stores the delta within a second or so of the agent's flush; the README's
    # own curl commands are repeated until they show it.
    deadline = time.monotonic() + 60
    while True:
        outputs = [_run(operator, "hub", c) for c in commands(check)]
        answers = [json.loads(o) for o in outputs]
        twins = next((a["twins"] for a in answers if "twins" in a), [])
        if twin in twins or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert twins == [twin], (twins, operator._logs())
    devices = next(a["devices"] for a in answers if "devices" in a)
    assert [d["device"] for d in devices] == [device]
    assert brand == "acme"
    # The raw identifier never reaches the API (it stays on the device).
    assert all(SUBJECT not in o for o in outputs)
    # And the twin holds what was sent.
    status, body, _ = operator.shells["hub"].run(
        f'curl -sf -H "Authorization: Bearer $KEY" '
        f"http://127.0.0.1:{operator.api_port}/v1/brands/{brand}/twins/{twin}"
    )
    assert status == 0, body
    fields = json.loads(body)["fields"]
    assert fields["coffee.brews_total"]["value"] == sent["value"]
    assert fields["coffee.brews_total"]["device"] == device
