"""The PostgreSQL launcher (twinsync.services.Postgres), as the fixtures and tests use it.

A private cluster on a free loopback port, never the system service; as root it runs as
the 'postgres' user (PostgreSQL refuses root) from a directory that user owns; its
superuser's password is random and checked; killed and restarted on the same port and
data it keeps what was committed, also for a new launcher on the same work directory;
``remove`` leaves nothing behind.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import psycopg
import pytest

from twinsync.services import Postgres


def owner_of(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    return pwd.getpwuid(int(uid)).pw_name


def test_a_private_server_that_survives_a_crash(tmp_path: Path) -> None:
    server = Postgres(tmp_path / "pg")
    try:
        server.start()
        assert server.port != 5432
        assert not str(server.data_dir).startswith("/var/lib/postgresql")
        assert server.pid is not None
        if os.geteuid() == 0:
            assert owner_of(server.pid) == "postgres"
            assert server.data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert len(server.password) >= 24
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                host="127.0.0.1", port=server.port, user=server.username, password="guess"
            )

        database = server.create_database("kept")
        with server.connect("kept") as conn:
            conn.execute("CREATE TABLE t (a INTEGER)")
            conn.execute("INSERT INTO t VALUES (1)")
        port = server.port
        server.kill()
        assert not server.running

        again = Postgres(tmp_path / "pg", port=port)  # a new launcher, same directory
        assert again.password == server.password
        assert again.data_dir == server.data_dir
        again.start()
        with again.connect("kept") as conn:
            assert conn.execute("SELECT a FROM t").fetchall() == [(1,)]
        assert database.url == again.database_url("kept")
        again.restart()
        with again.connect("kept") as conn:
            assert conn.execute("SELECT a FROM t").fetchall() == [(1,)]
        again.remove()
        assert not again.running
        assert not server.data_dir.exists()
    finally:
        server.remove()
