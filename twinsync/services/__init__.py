"""One launcher for the real services: mosquitto, influxd and PostgreSQL from the system packages.

Used by ``twinsync demo`` and by the test fixtures alike. Each service runs on free
loopback ports in its own temporary directory, is waited for until it answers, and can be
stopped gracefully, killed (SIGKILL) and restarted on the same ports and data, which is
what the fault-injection tests need.

    with LocalServices() as services:
        services.mosquitto.port, services.influxd.url
        services.influxd.query("SHOW DATABASES")      # as the admin the launcher created
        services.influxd.hub_settings("twinsync")     # the hub's [influx] section

    with Postgres(workdir) as pg:                     # started alone (tests/conftest.py)
        pg.create_database("twinsync").hub_settings() # the hub's [state] section
"""

from __future__ import annotations

from ._influxd import Influxd
from ._local import LocalServices
from ._mosquitto import Mosquitto
from ._postgres import Postgres, PostgresDatabase
from ._process import ServiceError, free_port, wait_port

__all__ = [
    "Influxd",
    "LocalServices",
    "Mosquitto",
    "Postgres",
    "PostgresDatabase",
    "ServiceError",
    "free_port",
    "wait_port",
]
