"""One batch into the database: binary COPY through a staging table, the
newest position per vehicle, and the alerts the fixes raised, all in one
transaction and idempotent (a batch written twice stores nothing twice).

Each batch is copied into a temporary staging table and moved into ``fixes``
with ``ON CONFLICT DO NOTHING`` (COPY itself cannot skip duplicates);
``vehicles`` gets the newest non-late position per vehicle; alerts are
inserted (unique per vehicle, key and start time) or closed.

Alerts go the same way, through ``alerts_stage``: a dense city raises a zone
enter or exit every few fixes, and one statement per event cost more than
the rest of the batch. They are applied in the order the engine raised them,
in rounds: round *n* holds the *n*-th event of each (vehicle, key), so the
events of one round touch different alerts and one statement can apply them
all, while a vehicle that leaves and re-enters a zone within one batch gets
its end applied before its next start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps

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

STAGE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS fixes_stage (LIKE fixes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS alerts_stage (
    seq int4, round int4, is_end bool, id text, vehicle_id text, kind text, key text, severity text,
    zone_id text, route_id text, ts timestamptz, raised_at timestamptz, lon float8, lat float8,
    ended_ts timestamptz, ended_at timestamptz, details jsonb, place text, end_lon float8, end_lat float8
) ON COMMIT DELETE ROWS;
"""
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


ALERT_STAGE_COLUMNS = (
    "seq", "round", "is_end", "id", "vehicle_id", "kind", "key", "severity", "zone_id", "route_id",
    "ts", "raised_at", "lon", "lat", "ended_ts", "ended_at", "details", "place", "end_lon", "end_lat",
)  # fmt: skip
ALERT_STAGE_TYPES = (
    "int4", "int4", "bool", "text", "text", "text", "text", "text", "text", "text",
    "timestamptz", "timestamptz", "float8", "float8", "timestamptz", "timestamptz", "jsonb", "text",
    "float8", "float8",
)  # fmt: skip
_ALERT_COLUMNS = (
    "id, vehicle_id, kind, key, severity, zone_id, route_id, ts, raised_at, lon, lat, ended_ts, ended_at, details,"
    " place, end_lon, end_lat"
)
_ALERT_VALUES = (
    "s.id::uuid, s.vehicle_id, s.kind, s.key, s.severity, s.zone_id, s.route_id, s.ts, s.raised_at, s.lon, s.lat,"
    " s.ended_ts, s.ended_at, s.details, s.place, s.end_lon, s.end_lat"
)
# Starts and instants of one round: a start while the same alert is still
# open (alerts_one_active) or already stored (a batch written twice) is skipped.
_ALERT_INSERT = f"""
INSERT INTO alerts ({_ALERT_COLUMNS})
SELECT {_ALERT_VALUES} FROM alerts_stage s WHERE s.round = {{n}} AND NOT s.is_end ORDER BY s.seq
ON CONFLICT DO NOTHING
"""
# Ends of one round close the open alert of their (vehicle, key), record where
# it ended and add their figures to the start's details without overwriting
# any (the start's ``drum: ccw`` stays when the end says ``cw``); an end whose
# start was never stored is recorded as the whole interval. An end whose own
# alert is already closed was applied before (the batch is written again): it
# must not close the alert that opened after it.
_ALERT_END = f"""
WITH closed AS (
    UPDATE alerts a SET ended_ts = s.ended_ts, ended_at = s.ended_at, end_lon = s.end_lon, end_lat = s.end_lat,
                        details = s.details || a.details
    FROM alerts_stage s
    WHERE s.round = {{n}} AND s.is_end AND a.vehicle_id = s.vehicle_id AND a.key = s.key AND a.ended_ts IS NULL
      AND NOT EXISTS (SELECT 1 FROM alerts done WHERE done.id = s.id::uuid AND done.ended_ts IS NOT NULL)
    RETURNING s.seq
)
INSERT INTO alerts ({_ALERT_COLUMNS})
SELECT {_ALERT_VALUES} FROM alerts_stage s
WHERE s.round = {{n}} AND s.is_end AND s.seq NOT IN (SELECT seq FROM closed) ORDER BY s.seq
ON CONFLICT DO NOTHING
"""


# Each alert the desk shows gets a short number per local day of raising,
# e.g. 20261201-0042, handed out in the transaction that inserts it.
_NUMBER_ALERTS = """
WITH todo AS (
    SELECT id, (raised_at AT TIME ZONE %(tz)s)::date AS day,
           row_number() OVER (PARTITION BY (raised_at AT TIME ZONE %(tz)s)::date ORDER BY raised_at, ts, id) AS n
    FROM alerts WHERE number IS NULL AND kind <> 'zone'
), per_day AS (
    SELECT day, max(n) AS count FROM todo GROUP BY day
), bumped AS (
    INSERT INTO alert_counters AS c (day, last) SELECT day, count FROM per_day
    ON CONFLICT (day) DO UPDATE SET last = c.last + excluded.last
    RETURNING day, last
)
UPDATE alerts a SET number = to_char(t.day, 'YYYYMMDD') || '-' || lpad((b.last - p.count + t.n)::text, 4, '0')
FROM todo t JOIN per_day p USING (day) JOIN bumped b USING (day)
WHERE a.id = t.id
"""
# Stored fixes whose flags changed after the fact (a suspect jump that was a real move).
_CORRECT_FLAGS = """
UPDATE fixes f SET flags = c.flags
FROM (SELECT unnest(%(v)s::text[]) AS vehicle_id, unnest(%(t)s::timestamptz[]) AS ts,
             unnest(%(f)s::int2[]) AS flags) c
WHERE f.vehicle_id = c.vehicle_id AND f.ts = c.ts
"""


class AlertRow(msgspec.Struct, frozen=True, gc=False):
    """An engine event to persist: a start or instant inserts, an end closes."""

    id: str
    event: Event
    raised_at: float
    place: str | None = None  # where, in the city's own words (start and instant rows)


class FlagCorrection(msgspec.Struct, frozen=True, gc=False):
    vehicle_id: str
    ts: float
    flags: int


def _coord(v: float) -> float | None:
    return v if v == v else None  # NaN: no known position


def alert_insert_params(a: AlertRow) -> tuple[Any, ...]:
    e = a.event
    ended = utc(e.ts) if e.phase == "instant" else None
    start_ts = e.ts
    end_lon = end_lat = None
    if e.phase == "end":  # an end whose start we never saw: record the whole interval
        start_ts = float(e.details.get("started_at", e.ts))
        ended = utc(e.ts)
        end_lon, end_lat = _coord(e.lon), _coord(e.lat)
    return (
        a.id, e.vehicle_id, e.kind, e.key, e.severity, e.zone_id, e.route_id, utc(start_ts),
        utc(a.raised_at), _coord(e.lon), _coord(e.lat), ended, utc(a.raised_at) if ended else None, e.details,
        a.place, end_lon, end_lat,
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


_COPY_FIXES = f"COPY fixes_stage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_ALERTS = f"COPY alerts_stage ({', '.join(ALERT_STAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def open_writer_connection(
    dsn: str, *, connect_timeout_s: float, statement_timeout_s: float
) -> psycopg.Connection[Any]:
    """The writer's blocking connection, staging tables ready. A write that
    hangs fails by itself after ``statement_timeout_s``: the server cancels a
    slow statement, the kernel gives up on a dead peer (TCP user timeout)."""
    timeout_ms = int(statement_timeout_s * 1000)
    conn = psycopg.connect(
        dsn,
        connect_timeout=max(1, int(connect_timeout_s)),
        application_name="gpsd-writer",
        options=f"-c statement_timeout={timeout_ms} -c timezone=UTC",
        tcp_user_timeout=timeout_ms,
        keepalives=1,
        keepalives_idle=max(1, int(statement_timeout_s / 3)),
        keepalives_interval=max(1, int(statement_timeout_s / 9)),
        keepalives_count=3,
    )
    try:
        conn.execute(STAGE_SQL)
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def write_batch(
    conn: psycopg.Connection[Any],
    rows: Sequence[Fix],
    alerts: Sequence[AlertRow],
    corrections: Sequence[FlagCorrection] = (),
    *,
    timezone: str = "Asia/Shanghai",
) -> int:
    """Write one batch in one transaction; returns the number of new rows in
    ``fixes``. Blocking: the writer calls it in a worker thread."""
    statements: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        if rows:
            with cur.copy(_COPY_FIXES) as copy:
                copy.set_types(list(TYPES))
                for f in rows:
                    copy.write_row(fix_row(f))
            statements += (_MOVE_SQL, _LAST_SQL)
        if alerts:
            stage, rounds = alert_stage_rows(alerts)
            with cur.copy(_COPY_ALERTS) as copy:
                copy.set_types(list(ALERT_STAGE_TYPES))
                for row in stage:
                    copy.write_row(row)
            for n, (starts, ends) in enumerate(rounds):
                statements += [sql.format(n=n) for sql, count in ((_ALERT_INSERT, starts), (_ALERT_END, ends)) if count]
        # One round trip for the statements (no parameters, so the simple query
        # protocol takes several at once).
        inserted = 0
        if statements:
            cur.execute(";".join(statements))
            inserted = cur.rowcount if rows else 0  # the first statement's: the move into fixes
        if any(a.event.kind != "zone" for a in alerts):
            cur.execute(_NUMBER_ALERTS, {"tz": timezone})
        if corrections:
            cur.execute(
                _CORRECT_FLAGS,
                {
                    "v": [c.vehicle_id for c in corrections],
                    "t": [utc(c.ts) for c in corrections],
                    "f": [c.flags for c in corrections],
                },
            )
    return max(inserted, 0)


def alert_stage_rows(alerts: Sequence[AlertRow]) -> tuple[list[tuple[Any, ...]], list[list[int]]]:
    """Staging rows in event order, and per round how many starts and ends it holds."""
    seen: dict[tuple[str, str], int] = {}
    rounds: list[list[int]] = []
    rows = []
    for seq, a in enumerate(alerts):
        e = a.event
        k = (e.vehicle_id, e.key)
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(rounds):
            rounds.append([0, 0])
        is_end = e.phase == "end"
        rounds[n][is_end] += 1
        rows.append((seq, n, is_end, *alert_insert_params(a)))
    return rows, rounds
