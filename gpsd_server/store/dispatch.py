"""The ``dispatches`` table: 12319 cases sent to patrol cars."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class DispatchRow:
    id: int
    lon: float
    lat: float
    vehicle_id: str
    distance_m: float | None
    note: str
    created_by: str
    created_at: datetime


async def record(
    conn: psycopg.AsyncConnection[Any],
    *,
    lon: float,
    lat: float,
    vehicle_id: str,
    distance_m: float,
    note: str,
    by: str,
) -> tuple[int, datetime]:
    cur = await conn.execute(
        "INSERT INTO dispatches (lon, lat, vehicle_id, distance_m, note, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, created_at",
        (lon, lat, vehicle_id, distance_m, note, by),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def recent(conn: psycopg.AsyncConnection[Any], limit: int) -> list[DispatchRow]:
    cur = await conn.execute(
        "SELECT id, lon, lat, vehicle_id, distance_m, note, created_by, created_at"
        " FROM dispatches ORDER BY created_at DESC LIMIT %s",
        (limit,),
    )
    return [DispatchRow(*row) for row in await cur.fetchall()]


async def between(
    conn: psycopg.AsyncConnection[Any], start: datetime, end: datetime, limit: int = 10000
) -> list[DispatchRow]:
    """Dispatches created in [start, end), oldest first (the dispatch log report)."""
    cur = await conn.execute(
        "SELECT id, lon, lat, vehicle_id, distance_m, note, created_by, created_at"
        " FROM dispatches WHERE created_at >= %s AND created_at < %s ORDER BY created_at, id LIMIT %s",
        (start, end, limit),
    )
    return [DispatchRow(*row) for row in await cur.fetchall()]
