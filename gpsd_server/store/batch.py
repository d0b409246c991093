"""One batch into the database: binary COPY through a staging table, the
newest position per vehicle, and the alerts the fixes raised, all in one
transaction and idempotent (a batch written twice stores nothing twice).

Each batch is copied into a temporary staging table and moved into ``fixes``
with ``ON CONFLICT DO NOTHING`` (COPY itself cannot skip duplicates);
``vehicles`` gets the newest non-late position per vehicle; alerts are
inserted (unique per vehicle, key and start time) or closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps

from gpsd_server.model import Event, Fix, FixFlag, Sensors

COLUMNS = (
    "vehicle_id", "ts", "received_at", "lon", "lat", "speed_kmh", "heading", "alt_m", "sats",
    "hdop", "ignition", "alarm", "status", "sensors", "mileage_km", "source", "flags",
)  # fmt: skip
TYPES = (
    "text", "timestamptz", "timestamptz", "float8", "float8", "float4", "float4", "float4",
    "int2", "float4", "bool", "int8", "int8", "jsonb", "float8", "text", "int2",
)  # fmt: skip
_json_encoder = msgspec.json.Encoder()
set_json_dumps(lambda obj: _json_encoder.encode(obj).decode())

STAGE_SQL = "CREATE TEMP TABLE IF NOT EXISTS fixes_stage (LIKE fixes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_MOVE_SQL = (
    f"INSERT INTO fixes ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM fixes_stage ON CONFLICT DO NOTHING"
)
_LAST_SQL = f"""
INSERT INTO vehicles AS v (id, last_ts, last_received_at, last_lon, last_lat, last_speed_kmh,
                           last_heading, last_alarm, last_status, last_sensors, updated_at)
SELECT DISTINCT ON (vehicle_id) vehicle_id, ts, received_at, lon, lat, speed_kmh, heading,
       alarm, status, sensors, now()
FROM fixes_stage WHERE flags & {int(FixFlag.LATE)} = 0
ORDER BY vehicle_id, ts DESC
ON CONFLICT (id) DO UPDATE SET
    last_ts = excluded.last_ts, last_received_at = excluded.last_received_at,
    last_lon = excluded.last_lon, last_lat = excluded.last_lat,
    last_speed_kmh = excluded.last_speed_kmh, last_heading = excluded.last_heading,
    last_alarm = excluded.last_alarm, last_status = excluded.last_status,
    last_sensors = excluded.last_sensors, updated_at = now()
WHERE v.last_ts IS NULL OR excluded.last_ts >= v.last_ts
"""


_ALERT_INSERT = """
INSERT INTO alerts (id, vehicle_id, kind, key, severity, zone_id, route_id, ts, raised_at, lon, lat,
                    ended_ts, ended_at, details)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
_ALERT_END = """
UPDATE alerts SET ended_ts = %s, ended_at = %s, details = details || %s
WHERE vehicle_id = %s AND key = %s AND ended_ts IS NULL
"""


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An engine event to persist: a start or instant inserts, an end closes."""

    id: str
    event: Event
    raised_at: float


def alert_insert_params(a: AlertRow) -> tuple[Any, ...]:
    e = a.event
    ended = utc(e.ts) if e.phase == "instant" else None
    start_ts = e.ts
    if e.phase == "end":  # an end whose start we never saw: record the whole interval
        start_ts = float(e.details.get("start_ts", e.ts))
        ended = utc(e.ts)
    return (
        a.id, e.vehicle_id, e.kind, e.key, e.severity, e.zone_id, e.route_id, utc(start_ts),
        utc(a.raised_at), e.lon, e.lat, ended, utc(a.raised_at) if ended else None, e.details,
    )  # fmt: skip


def sensors_json(s: Sensors | None) -> dict[str, Any] | None:
    if s is None:
        return None
    out = {k: getattr(s, k) for k in ("cover_closed", "loaded", "lift", "drum")}
    return {k: v for k, v in out.items() if v is not None} or None


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def fix_row(f: Fix) -> tuple[Any, ...]:
    return (
        f.vehicle_id, utc(f.ts), utc(f.received_at), f.lon, f.lat, f.speed_kmh, f.heading,
        f.alt_m, f.sats, f.hdop, f.ignition, f.alarm, f.status, sensors_json(f.sensors),
        f.mileage_km, f.source, int(f.flags),
    )  # fmt: skip


async def write_batch(conn: psycopg.AsyncConnection[Any], rows: Sequence[Fix], alerts: Sequence[AlertRow]) -> int:
    """Write one batch in one transaction; returns the number of new rows in ``fixes``."""
    inserted = 0
    async with conn.transaction(), conn.cursor() as cur:
        if rows:
            async with cur.copy(f"COPY fixes_stage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(list(TYPES))
                for f in rows:
                    await copy.write_row(fix_row(f))
            await cur.execute(_MOVE_SQL)
            inserted = cur.rowcount
            await cur.execute(_LAST_SQL)
        if alerts:
            await _write_alerts(cur, alerts)
    return max(inserted, 0)


async def _write_alerts(cur: psycopg.AsyncCursor[Any], alerts: Sequence[AlertRow]) -> None:
    starts = [alert_insert_params(a) for a in alerts if a.event.phase != "end"]
    if starts:
        await cur.executemany(_ALERT_INSERT, [_jsonb(p) for p in starts])
    for a in alerts:
        e = a.event
        if e.phase != "end":
            continue
        await cur.execute(_ALERT_END, (utc(e.ts), utc(a.raised_at), Jsonb(e.details), e.vehicle_id, e.key))
        if cur.rowcount == 0:
            await cur.execute(_ALERT_INSERT, _jsonb(alert_insert_params(a)))


def _jsonb(params: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*params[:-1], Jsonb(params[-1]))
