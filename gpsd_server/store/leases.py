"""Partition leases and worker membership as PostgreSQL session advisory locks.

A worker holds ``(MEMBER_NS, worker)`` for its life, and ``(LEASE_NS, p)``
while it consumes partition p. Session locks end with the session: a killed
worker's locks are gone as soon as PostgreSQL ends its backend (at once for a
dead process; after the server-side keepalive for a vanished host).
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


async def _one(conn: psycopg.AsyncConnection[Any], sql: str, args: tuple[Any, ...]) -> Any:
    cur = await conn.execute(sql, args)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def join(conn: psycopg.AsyncConnection[Any], max_workers: int) -> int | None:
    """Take the first free worker number below ``max_workers``; None if all are taken."""
    for worker in range(max_workers):
        if await _one(conn, "SELECT pg_try_advisory_lock(%s, %s)", (MEMBER_NS, worker)):
            return worker
    return None


async def members(conn: psycopg.AsyncConnection[Any]) -> int:
    """Live workers of this database (at least this one)."""
    return max(1, int(await _one(conn, _MEMBERS, (MEMBER_NS,))))


async def try_take(conn: psycopg.AsyncConnection[Any], partition: int) -> bool:
    return bool(await _one(conn, "SELECT pg_try_advisory_lock(%s, %s)", (LEASE_NS, partition)))


async def give_back(conn: psycopg.AsyncConnection[Any], partition: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEASE_NS, partition))
