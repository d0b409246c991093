"""Read queries: last positions and tracks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True, slots=True)
class LastPosition:
    vehicle_id: str
    plate: str | None
    vehicle_class: str
    company: str | None
    ts: datetime
    lon: float
    lat: float
    speed_kmh: float | None
    heading: float | None
    alarm: int
    status: int


async def last_positions(conn: psycopg.AsyncConnection[Any]) -> list[LastPosition]:
    cur = await conn.execute(
        "SELECT id, plate, class, company, last_ts, last_lon, last_lat, last_speed_kmh,"
        " last_heading, coalesce(last_alarm, 0), coalesce(last_status, 0)"
        " FROM vehicles WHERE last_ts IS NOT NULL ORDER BY id"
    )
    return [LastPosition(*row) for row in await cur.fetchall()]


async def vehicle_exists(conn: psycopg.AsyncConnection[Any], vehicle_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM vehicles WHERE id = %s", (vehicle_id,))
    return await cur.fetchone() is not None


async def track(
    conn: psycopg.AsyncConnection[Any], vehicle_id: str, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """Fixes of one vehicle in [start, end), oldest first, at most ``limit``."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT ts, lon, lat, speed_kmh, heading, flags FROM fixes"
            " WHERE vehicle_id = %s AND ts >= %s AND ts < %s ORDER BY ts LIMIT %s",
            (vehicle_id, start, end, limit),
        )
        return await cur.fetchall()
