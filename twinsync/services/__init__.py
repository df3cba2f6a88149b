"""One launcher for the real services: mosquitto and influxd from the system packages.

Used by ``twinsync demo`` and by the test fixtures alike. Each service runs on free
loopback ports in its own temporary directory, is waited for until it answers, and can be
stopped gracefully, killed (SIGKILL) and restarted on the same ports and data, which is
what the fault-injection tests need.

    with LocalServices() as services:
        services.mosquitto.port, services.influxd.url
        services.influxd.query("SHOW DATABASES")      # as the admin the launcher created
        services.influxd.hub_settings("twinsync")     # the hub's [influx] section
"""

from __future__ import annotations

from ._influxd import Influxd
from ._local import LocalServices
from ._mosquitto import Mosquitto
from ._process import ServiceError, free_port, wait_port

__all__ = [
    "Influxd",
    "LocalServices",
    "Mosquitto",
    "ServiceError",
    "free_port",
    "wait_port",
]
