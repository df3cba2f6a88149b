"""A hub-like process using the state store, driven by tests/store (one JSON line per answer).

    python state_worker.py URL migrate                       # ready, waits for "go", migrates
    python state_worker.py URL claim TABLE BATCH NOW LEASE   # ready, "go", claims until none
    python state_worker.py URL claim-and-hang TABLE N NOW LEASE  # claims N, answers, hangs
    python state_worker.py URL hold NAME                     # holds exclusive(NAME), hangs

The password (PostgreSQL) comes from the environment, ``STATE_PASSWORD``. A hanging
worker sleeps until it is killed: what a hub instance that dies mid-work looks like.
"""

from __future__ import annotations

import json
import os
import sys
import time

from cloud_hub.store import open_state_store


def say(value: object) -> None:
    print(json.dumps(value), flush=True)


def main(url: str, command: str, *args: str) -> None:
    password = os.environ.get("STATE_PASSWORD", "")
    if command == "migrate":
        say("ready")
        sys.stdin.readline()  # the barrier: every worker starts migrating at once
        with open_state_store(url, password=password, migrate=False) as store:
            say({"applied": store.migrate(), "version": store.version()})
        return
    store = open_state_store(url, password=password, migrate=False)
    if command == "claim":
        table, batch, now, lease = args[0], int(args[1]), int(args[2]), int(args[3])
        say("ready")
        sys.stdin.readline()
        taken: list[int] = []
        while rows := store.claim(
            table, lease_column="due_ms", now_ms=now, lease_ms=lease, limit=batch
        ):
            taken += [int(r[0]) for r in rows]
        say(taken)
    elif command == "claim-and-hang":
        table, n, now, lease = args[0], int(args[1]), int(args[2]), int(args[3])
        rows = store.claim(table, lease_column="due_ms", now_ms=now, lease_ms=lease, limit=n)
        say([int(r[0]) for r in rows])
        time.sleep(3600)
    elif command == "hold":
        with store.exclusive(args[0]) as tx:
            assert tx is not None
            say("held")
            time.sleep(3600)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
