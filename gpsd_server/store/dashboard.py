"""The statistics the dashboard (统计) shows, counted by the database.

"Violations" are what the violations report counts: alerts of warning or
critical severity (zone presence records are info and never count), by the
local day of their fix time. Every function takes an optional scope (vehicle
ids), so a company account's dashboard counts its own vehicles only.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import psycopg

from gpsd_server.store.db import scope_clause

_VIOLATION = "a.severity IN ('warning', 'critical') AND a.kind <> 'zone'"


async def fleet_now(
    conn: psycopg.AsyncConnection[Any],
    now: datetime,
    *,
    moving_kmh: float,
    offline_s: float,
    scope: Collection[str] | None,
) -> list[tuple[str, str, int]]:
    """(class, status, count): status ``moving``, ``stopped``, ``offline`` (no fix
    for ``offline_s``) or ``no_fix`` (registered, never seen)."""
    where, args = scope_clause("v.id", scope)
    cur = await conn.execute(
        "SELECT class, CASE WHEN last_ts IS NULL THEN 'no_fix'"
        " WHEN extract(epoch FROM %s - last_ts) > %s THEN 'offline'"
        " WHEN coalesce(last_speed_kmh, 0) >= %s THEN 'moving' ELSE 'stopped' END AS st, count(*)"
        f" FROM vehicles v WHERE true{where} GROUP BY 1, 2 ORDER BY 1, 2",
        [now, offline_s, moving_kmh, *args],
    )
    return [(str(c), str(s), int(n)) for c, s, n in await cur.fetchall()]


async def desk_now(conn: psycopg.AsyncConnection[Any], *, scope: Collection[str] | None) -> dict[str, int]:
    """Alerts on the desk now (open, acked) and vehicles whose violation still lasts."""
    where, args = scope_clause("a.vehicle_id", scope)
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE a.state = 'open'), count(*) FILTER (WHERE a.state = 'acked'),"
        f" count(DISTINCT a.vehicle_id) FILTER (WHERE a.ended_ts IS NULL AND {_VIOLATION})"
        " FROM alerts a LEFT JOIN vehicles v ON v.id = a.vehicle_id"
        f" WHERE a.state <> 'closed' AND a.kind <> 'zone'{where}",
        args,
    )
    row = await cur.fetchone()
    opened, acked, lasting = row if row else (0, 0, 0)
    return {"open": int(opened), "acked": int(acked), "vehicles_in_violation": int(lasting)}


async def violations_by(
    conn: psycopg.AsyncConnection[Any],
    start: datetime,
    end: datetime,
    timezone: str,
    *,
    scope: Collection[str] | None,
) -> list[tuple[str, str, str, str, str | None, str | None, int]]:
    """Violations in [start, end) counted per ``(local day, kind, severity, vehicle_id, plate, company)``."""
    where, args = scope_clause("a.vehicle_id", scope)
    cur = await conn.execute(
        "SELECT to_char(a.ts AT TIME ZONE %s, 'YYYY-MM-DD'), a.kind, a.severity, a.vehicle_id, v.plate, v.company,"
        " count(*) FROM alerts a LEFT JOIN vehicles v ON v.id = a.vehicle_id"
        f" WHERE a.ts >= %s AND a.ts < %s AND {_VIOLATION}{where} GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 4",
        [timezone, start, end, *args],
    )
    return [(str(d), str(k), s, vid, p, c, int(n)) for d, k, s, vid, p, c, n in await cur.fetchall()]
