"""Retention drops whole old chunks with drop_chunks and keeps the rest."""

from __future__ import annotations

from typing import Any

import psycopg

from gpsd_server.retention import retention_pass
from gpsd_server.settings import HistorySettings
from tests.fixtures.history import day_ago, insert_fixes, parked
from tests.fixtures.server import RunningServer


def chunks_holding(db: psycopg.Connection[Any], vehicle_id: str) -> int:
    row = db.execute("SELECT count(DISTINCT tableoid) FROM fixes WHERE vehicle_id = %s", (vehicle_id,)).fetchone()
    return int(row[0]) if row else 0


async def test_retention_drops_old_chunks_and_keeps_the_rest(
    server: RunningServer, db: psycopg.Connection[Any]
) -> None:
    assert server.server.timescaledb
    old, recent = f"{server.prefix}-old", f"{server.prefix}-new"
    # 40 days old: straight into the table (the decoder refuses fixes older than 30 days).
    insert_fixes(db, old, parked(112.3, 28.6, day_ago(40, hour_utc=6), seconds=600, step_s=10))
    insert_fixes(db, recent, parked(112.3, 28.6, day_ago(2, hour_utc=6), seconds=600, step_s=10))
    old_chunks = db.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'fixes'"
        " AND range_end < now() - interval '35 days'"
    ).fetchone()
    assert old_chunks is not None and old_chunks[0] >= 1 and chunks_holding(db, old) == 1

    # Retention off in the server's config; one pass with 35 days.
    running = server.server
    dropped = await retention_pass(running.db, HistorySettings(retention_days=35.0), timescaledb=running.timescaledb)
    assert dropped and all(name.startswith("_timescaledb_internal.") for name in dropped)
    assert db.execute("SELECT count(*) FROM fixes WHERE vehicle_id = %s", (old,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM fixes WHERE vehicle_id = %s", (recent,)).fetchone() == (61,)
    left = db.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'fixes'"
        " AND range_end < now() - interval '35 days'"
    ).fetchone()
    assert left == (0,)
    nothing_left = await retention_pass(running.db, HistorySettings(retention_days=35.0), timescaledb=True)
    assert nothing_left == []


async def test_retention_is_off_by_default(server: RunningServer) -> None:
    running = server.server
    assert running.cfg.history.retention_days == 0
    assert await retention_pass(running.db, running.cfg.history, timescaledb=running.timescaledb) == []
