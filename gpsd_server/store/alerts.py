"""The ``alerts`` table as the desk, replay and restore read it."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

from gpsd_server.store.db import scope_clause

COLUMNS = (
    "id, vehicle_id, kind, key, severity, zone_id, route_id, ts, raised_at, lon, lat, ended_ts, ended_at,"
    " details, state, acked_by, acked_at, closed_by, closed_at, comment, end_lon, end_lat, place, number"
)
StateFilter = Literal["open", "acked", "closed", "active", "all"]
# An alert as a caller names it: its id, or the number the desk shows
# (``YYYYMMDD-NNNN``, unique; zone presence records have none).
AlertRef = uuid.UUID | str


def _ref(ref: AlertRef) -> tuple[str, AlertRef]:
    return ("id = %s", ref) if isinstance(ref, uuid.UUID) else ("number = %s", ref)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One row of ``alerts``."""

    id: uuid.UUID
    vehicle_id: str
    kind: str
    key: str
    severity: str
    zone_id: str | None
    route_id: str | None
    ts: datetime
    raised_at: datetime
    lon: float | None
    lat: float | None
    ended_ts: datetime | None
    ended_at: datetime | None
    details: dict[str, Any]
    state: str
    acked_by: str | None
    acked_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    comment: str | None
    end_lon: float | None = None
    end_lat: float | None = None
    place: str | None = None
    number: str | None = None


async def list_alerts(
    conn: psycopg.AsyncConnection[Any],
    *,
    state: StateFilter = "active",
    vehicle_id: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
    scope: Collection[str] | None = None,
) -> list[AlertRecord]:
    """The desk's view, newest first; zone presence records only when asked for
    by kind; with ``scope``, of those vehicles only."""
    where: list[str] = []
    args: list[Any] = []
    if scope is not None:
        where.append("vehicle_id = ANY(%s)")
        args.append(list(scope))
    if state == "active":
        where.append("state <> 'closed'")
    elif state != "all":
        where.append("state = %s")
        args.append(state)
    if vehicle_id:
        where.append("vehicle_id = %s")
        args.append(vehicle_id)
    if kind:
        where.append("kind = %s")
        args.append(kind)
    else:
        where.append("kind <> 'zone'")
    if since is not None:
        where.append("ts >= %s")
        args.append(since)
    sql = f"SELECT {COLUMNS} FROM alerts WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT %s"
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        await cur.execute(sql.encode(), [*args, limit])
        return await cur.fetchall()


async def get(
    conn: psycopg.AsyncConnection[Any], ref: AlertRef, *, scope: Collection[str] | None = None
) -> AlertRecord | None:
    """One alert by id or number; with ``scope``, an alert of another vehicle is missing."""
    where, arg = _ref(ref)
    only, only_args = scope_clause("vehicle_id", scope)
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM alerts WHERE {where}{only}".encode(), (arg, *only_args))
        return await cur.fetchone()


class TransitionRefused(Exception):
    """The alert is missing (``state`` None) or not in a state that allows the change."""

    def __init__(self, state: str | None) -> None:
        super().__init__(state or "missing")
        self.state = state


async def acknowledge(
    conn: psycopg.AsyncConnection[Any],
    alert: AlertRef,
    *,
    by: str,
    at: datetime,
    scope: Collection[str] | None = None,
) -> AlertRecord:
    """Open -> acked. With ``scope``, an alert of another vehicle is refused as missing."""
    return await _transition(
        conn, "UPDATE alerts SET state = 'acked', acked_by = %s, acked_at = %s WHERE state = 'open'", (by, at),
        alert, scope,
    )  # fmt: skip


async def close(
    conn: psycopg.AsyncConnection[Any],
    alert: AlertRef,
    *,
    by: str,
    at: datetime,
    comment: str,
    scope: Collection[str] | None = None,
) -> AlertRecord:
    """Not closed -> closed. With ``scope``, an alert of another vehicle is refused as missing."""
    return await _transition(
        conn,
        "UPDATE alerts SET state = 'closed', closed_by = %s, closed_at = %s, comment = %s WHERE state <> 'closed'",
        (by, at, comment),
        alert,
        scope,
    )


async def _transition(
    conn: psycopg.AsyncConnection[Any],
    sql: str,
    args: tuple[Any, ...],
    alert: AlertRef,
    scope: Collection[str] | None,
) -> AlertRecord:
    where, arg = _ref(alert)
    only, only_args = scope_clause("vehicle_id", scope)
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        await cur.execute(f"{sql} AND {where}{only} RETURNING {COLUMNS}".encode(), (*args, arg, *only_args))
        row = await cur.fetchone()
    if row is not None:
        return row
    cur2 = await conn.execute(f"SELECT state FROM alerts WHERE {where}{only}".encode(), (arg, *only_args))
    current = await cur2.fetchone()
    raise TransitionRefused(None if current is None else str(current[0]))


async def between(
    conn: psycopg.AsyncConnection[Any], vehicle_ids: Sequence[str], start: datetime, end: datetime, limit: int
) -> list[AlertRecord]:
    """Alerts raised (by fix time) in [start, end) for the vehicles, oldest first (replay)."""
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        await cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE vehicle_id = ANY(%s) AND ts >= %s AND ts < %s"
            " ORDER BY ts, id LIMIT %s",
            (list(vehicle_ids), start, end, limit),
        )
        return await cur.fetchall()


async def still_open(conn: psycopg.AsyncConnection[Any], vehicle_ids: Sequence[str] | None = None) -> list[AlertRecord]:
    """Alerts whose condition has not ended: what restore hands back to the rules
    (of every vehicle, or only of these)."""
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        if vehicle_ids is None:
            await cur.execute(f"SELECT {COLUMNS} FROM alerts WHERE ended_ts IS NULL ORDER BY vehicle_id, ts")
        else:
            await cur.execute(
                f"SELECT {COLUMNS} FROM alerts WHERE ended_ts IS NULL AND vehicle_id = ANY(%s) ORDER BY vehicle_id, ts",
                (list(vehicle_ids),),
            )
        return await cur.fetchall()
