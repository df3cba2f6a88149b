"""mosquitto from the system package, on a loopback port in its own directory."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

from ._process import SETUP_HINT, Service, ServiceError, find_binary, free_port, wait_port

__all__ = ["Mosquitto"]


class Mosquitto(Service):
    """A mosquitto broker on 127.0.0.1 with persistence in ``workdir``.

    ``dynsec_file`` loads mosquitto's Dynamic Security plugin with that configuration
    (what ``twinsync hub broker-auth --out`` writes): accounts bound to client ids,
    checked subscriptions. ``user`` is whom a broker started as root switches to (default
    root itself, since the 'mosquitto' user cannot read a private work directory; give
    that user the work directory and the plugin file's directory to run as it).
    """

    name = "mosquitto"
    #: where distributions install the plugin: Debian/Ubuntu (multiarch), Alpine and the
    #: eclipse-mosquitto image, source builds
    DYNSEC_PLUGIN_PATHS = (
        "/usr/lib/*/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/*/mosquitto_dynamic_security.so",
    )

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_config: str = "",
        *,
        dynsec_file: Path | None = None,
        user: str | None = None,
    ) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.extra_config = extra_config
        self.dynsec_file = dynsec_file
        self.user = user
        self.binary = find_binary("mosquitto")

    @classmethod
    def dynsec_plugin(cls) -> str:
        """The path of mosquitto's Dynamic Security plugin on this host."""
        for pattern in cls.DYNSEC_PLUGIN_PATHS:
            found = sorted(glob.glob(pattern))
            if found:
                return found[0]
        raise ServiceError(
            "mosquitto_dynamic_security.so not found (Debian's mosquitto 2.0 package ships "
            f"it in /usr/lib/<arch>/): {SETUP_HINT}"
        )

    @property
    def config_path(self) -> Path:
        """The generated mosquitto.conf."""
        return self.workdir / "mosquitto.conf"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        has_listener = "listener " in self.extra_config
        lines = [
            f"persistence true\npersistence_location {self.workdir}/\n",
            "autosave_interval 1\n",
            # The hub withholds PUBACK until InfluxDB has the data, so the broker must let
            # many QoS 1 messages be in flight per client for batching to work.
            "max_inflight_messages 2000\nmax_queued_messages 1000000\n",
            "max_packet_size 1048576\n",
            "log_dest stdout\nlog_type error\nlog_type warning\n",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto would switch to the 'mosquitto' user, which cannot
            # read this private work directory (persistence, password and ACL files).
            lines.append(f"user {self.user or 'root'}\n")
        if not has_listener:
            lines.append(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        if self.dynsec_file is not None:
            lines.append(
                f"plugin {self.dynsec_plugin()}\nplugin_opt_config_file {self.dynsec_file}\n"
            )
        lines.append(self.extra_config)
        self.config_path.write_text("".join(lines))
        return [self.binary, "-c", str(self.config_path)], {}

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.running:
            if time.monotonic() > deadline or (self._proc and self._proc.poll() is not None):
                raise ServiceError("mosquitto exited")
            time.sleep(0.05)
        wait_port(self.port, timeout)
