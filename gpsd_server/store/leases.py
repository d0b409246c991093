"""Partition leases and worker membership as PostgreSQL session advisory locks.

A worker holds ``(MEMBER_NS, worker)`` for its life, and ``(LEASE_NS, p)``
while it consumes partition p, on the session its track writer writes with
(``TrackWriter.on_session``: these run in the writer's thread, between two
batches). Session locks end with the session: a killed worker's locks are
gone as soon as PostgreSQL ends its backend (at once for a dead process;
after the server-side keepalive for a vanished host).
"""

from __future__ import annotations

from typing import Any

import psycopg

LEASE_NS = 808_001  # advisory lock class id: partition leases
MEMBER_NS = 808_002  # advisory lock class id: worker membership

_MEMBERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _one(conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...]) -> Any:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def join(conn: psycopg.Connection[Any], max_workers: int, keepalive: tuple[int, int, int]) -> int | None:
    """Server-side keepalive on this session (idle, interval, count: a vanished
    host loses its locks after about idle + interval * count seconds), then the
    first free worker number below ``max_workers``; None if all are taken."""
    idle, interval, count = keepalive
    conn.execute(f"SET tcp_keepalives_idle = {int(idle)}")
    conn.execute(f"SET tcp_keepalives_interval = {int(interval)}")
    conn.execute(f"SET tcp_keepalives_count = {int(count)}")
    for worker in range(max_workers):
        if _one(conn, "SELECT pg_try_advisory_lock(%s, %s)", (MEMBER_NS, worker)):
            return worker
    return None


def members(conn: psycopg.Connection[Any]) -> int:
    """Live workers of this database (at least this one)."""
    return max(1, int(_one(conn, _MEMBERS, (MEMBER_NS,))))


def try_take(conn: psycopg.Connection[Any], partition: int) -> bool:
    return bool(_one(conn, "SELECT pg_try_advisory_lock(%s, %s)", (LEASE_NS, partition)))


def give_back(conn: psycopg.Connection[Any], partition: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEASE_NS, partition))


_HELD = (
    "SELECT count(*) FILTER (WHERE classid = %s), count(*) FILTER (WHERE classid = %s) FROM pg_locks"
    " WHERE locktype = 'advisory' AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def held(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(partitions leased, workers joined) in this database, for tests and benchmarks."""
    row = conn.execute(_HELD, (LEASE_NS, MEMBER_NS)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
