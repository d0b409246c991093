"""The ``vehicles`` table: the registry mirror and each vehicle's last position."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gpsd_server.core.city import Vehicle
from gpsd_server.store.db import scope_clause


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
    received_at: datetime | None = None  # when the server received that fix


_LAST = (
    "SELECT id, plate, class, company, last_ts, last_lon, last_lat, last_speed_kmh,"
    " last_heading, coalesce(last_alarm, 0), coalesce(last_status, 0), last_received_at"
    " FROM vehicles WHERE last_ts IS NOT NULL"
)


async def last_positions(
    conn: psycopg.AsyncConnection[Any], *, scope: Collection[str] | None = None
) -> list[LastPosition]:
    """Every vehicle's last stored position; with ``scope``, of those vehicles
    only (a company's fleet, or the vehicles a worker just took over)."""
    only, args = scope_clause("id", scope)
    cur = await conn.execute(f"{_LAST}{only} ORDER BY id".encode(), args)
    return [LastPosition(*row) for row in await cur.fetchall()]


async def sync_registry(conn: psycopg.AsyncConnection[Any], vehicles: Iterable[Vehicle]) -> None:
    """Plates, classes, companies and terminals of the registry into ``vehicles``."""
    rows = [(v.id, v.plate or None, v.vehicle_class, v.company or None, v.terminal) for v in vehicles]
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO vehicles (id, plate, class, company, terminal) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET plate = excluded.plate, class = excluded.class,"
            " company = excluded.company, terminal = excluded.terminal, updated_at = now()",
            rows,
        )


async def vehicle_exists(conn: psycopg.AsyncConnection[Any], vehicle_id: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM vehicles WHERE id = %s) OR EXISTS (SELECT 1 FROM fixes WHERE vehicle_id = %s)",
        (vehicle_id, vehicle_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def known_vehicles(conn: psycopg.AsyncConnection[Any], vehicle_ids: Sequence[str]) -> set[str]:
    cur = await conn.execute("SELECT id FROM vehicles WHERE id = ANY(%s)", (list(vehicle_ids),))
    return {r[0] for r in await cur.fetchall()}


async def vehicles_of_class(conn: psycopg.AsyncConnection[Any], vehicle_class: str) -> dict[str, str | None]:
    """Vehicle id -> plate for one class, from the registry table."""
    cur = await conn.execute("SELECT id, plate FROM vehicles WHERE class = %s ORDER BY id", (vehicle_class,))
    return {r[0]: r[1] for r in await cur.fetchall()}


async def companies(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    """The companies of the registered vehicles."""
    cur = await conn.execute("SELECT DISTINCT company FROM vehicles WHERE company IS NOT NULL")
    return {str(row[0]) for row in await cur.fetchall()}
