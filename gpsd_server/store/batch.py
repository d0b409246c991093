"""One batch into the database: binary COPY through a staging table, the
newest position per vehicle, the hourly mileage summary, and the alerts the
fixes raised, all in one transaction and idempotent (a batch written twice
stores nothing twice).

Each batch is copied into a temporary staging table (temporary tables are not
WAL-logged) and moved into ``fixes`` by a plain ``INSERT ... SELECT`` inside a
savepoint: duplicates are rare (a redelivery after a crash, a replayed
spool), and checking every row with ``ON CONFLICT DO NOTHING`` cost about
3 µs of PostgreSQL CPU per row more (measured with ``tools/bench_e2e.py``).
Only when that insert meets a unique violation is it rolled back to the
savepoint and redone with ``ON CONFLICT DO NOTHING``, the rows really
inserted kept in ``fixes_fresh``. ``vehicles`` gets the newest non-late
position per vehicle; alerts are inserted (unique per vehicle, key and start
time) or closed, and numbered per local day. Stored fixes whose flags the
filter changed after the fact (a suspect jump that was a real move) are
updated and their hours of the summary recomputed.

``fix_hours`` (migration 030) keeps per vehicle and UTC hour what the daily
mileage report needs. The new usable fixes of a batch are aggregated per
(vehicle, hour) and appended to the hour when they all come after its last
fix (the live case); an hour that gets a fix before its last one (a late or
backfilled fix, a batch out of order) is recomputed from ``fixes``. Only
rows newly inserted count, so duplicates change nothing.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import psycopg.errors
from psycopg.types.json import set_json_dumps

from gpsd_server.core.history import UNUSABLE_FLAGS
from gpsd_server.model import Event, Fix, FixFlag, Sensors

COLUMNS = (
    "vehicle_id", "ts", "received_at", "lon", "lat", "speed_kmh", "heading", "alt_m", "sats",
    "hdop", "ignition", "alarm", "status", "sensors", "mileage_km", "source", "flags",
)  # fmt: skip
# The COPYs' dumpers: a jsonb column goes as "bytea", its value already in
# jsonb's binary format (``jsonb_binary``), so psycopg's C dumper sends it
# as it is instead of calling the Python jsonb dumper for every row
# (0.3-0.6 µs per fix with sensors, 2026-12-06).
TYPES = (
    "text", "timestamptz", "timestamptz", "float8", "float8", "float4", "float4", "float4",
    "int2", "float4", "bool", "int8", "int8", "bytea", "float8", "text", "int2",
)  # fmt: skip
_json_encoder = msgspec.json.Encoder()
JSONB_VERSION = b"\x01"  # jsonb's binary format: this version byte, then the JSON text (PostgreSQL's jsonb_recv)


def jsonb_binary(doc: Any) -> bytes:
    """A document in jsonb's binary format, for a "bytea"-dumped COPY field of a jsonb column."""
    return JSONB_VERSION + _json_encoder.encode(doc)


def _json_dumps(obj: Any) -> bytes:
    """JSON for psycopg: msgspec's bytes as they are; bytes are JSON already (pre-encoded sensors)."""
    return obj if isinstance(obj, bytes) else _json_encoder.encode(obj)


set_json_dumps(_json_dumps)

STAGE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS fixes_stage (LIKE fixes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS fixes_fresh (LIKE fixes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS alerts_stage (
    seq int4, round int4, is_end bool, merged bool, id text, vehicle_id text, kind text, key text, severity text,
    zone_id text, route_id text, ts timestamptz, raised_at timestamptz, lon float8, lat float8,
    ended_ts timestamptz, ended_at timestamptz, details jsonb, place text, end_lon float8, end_lat float8
) ON COMMIT DELETE ROWS;
"""
_COLS = ", ".join(COLUMNS)
# The fast path: no row of the batch is stored yet (a unique violation rolls back to the savepoint).
_MOVE_SQL = f"INSERT INTO fixes ({_COLS}) SELECT {_COLS} FROM fixes_stage"
# The slow path: some are; keep the rows really inserted for the summary.
_MOVE_DEDUP_SQL = f"""
WITH ins AS (
    INSERT INTO fixes ({_COLS}) SELECT {_COLS} FROM fixes_stage ON CONFLICT DO NOTHING RETURNING {_COLS}
)
INSERT INTO fixes_fresh ({_COLS}) SELECT {_COLS} FROM ins
"""
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
    "seq", "round", "is_end", "merged", "id", "vehicle_id", "kind", "key", "severity", "zone_id", "route_id",
    "ts", "raised_at", "lon", "lat", "ended_ts", "ended_at", "details", "place", "end_lon", "end_lat",
)  # fmt: skip
# details, a jsonb column, go as ``jsonb_binary`` (see TYPES).
ALERT_STAGE_TYPES = (
    "int4", "int4", "bool", "bool", "text", "text", "text", "text", "text", "text", "text",
    "timestamptz", "timestamptz", "float8", "float8", "timestamptz", "timestamptz", "bytea", "text",
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


def _number_text(day: str, n: str) -> str:
    """The desk's short number per local day of raising, e.g. 20261201-0042
    (NULL when ``n`` is). At least four digits: lpad alone would cut the
    10,000th alert of a day to "1000" (a duplicate of the 1,000th; the unique
    index then failed every later write)."""
    return f"to_char({day}, 'YYYYMMDD') || '-' || lpad(({n})::text, greatest(4, length(({n})::text)), '0')"


# Starts and instants of one round: a start while the same alert is still
# open (alerts_one_active) or already stored (a batch written twice) is skipped.
#
# The alerts the desk numbers get their number in the same statement: the ones
# this insert will store (not stored yet, no alert of theirs open: each looked
# up per row by a correlated subquery, as the ends below are) are ranked
# per local day and the day's counter is bumped by their count. Numbered by an
# UPDATE after the insert instead, each was written twice, and the second
# write is not HOT (``number`` is indexed): 28 µs of PostgreSQL per numbered
# alert, 9 % of its time per batched fix (pg_stat_statements, bench_e2e,
# 2026-12-04). The staged rows are joined only with the few rows per day
# (counters): joined with the ranked rows as well, the planner (the stage is a
# temp table without statistics, estimated at a handful of rows) took a
# nested loop over the two, 385 ms per single-fix batch, and two full runs of
# bench_e2e in four spent 106-118 µs of PostgreSQL per fix. Rounds are
# numbered in turn (a vehicle's second alert of a key within one batch after
# every first one). ``_NUMBER_ALERTS`` still numbers
# whatever a batch stored without a number (an end recorded as the whole
# interval, a start whose check raced another writer).
_ALERT_INSERT = f"""
WITH checked AS MATERIALIZED (
    SELECT s.*, (s.raised_at AT TIME ZONE {{tz}})::date AS day,
           s.kind <> 'zone'
           AND (SELECT true FROM alerts a WHERE a.id = s.id::uuid) IS NULL
           AND (SELECT true FROM alerts a WHERE a.vehicle_id = s.vehicle_id AND a.key = s.key AND a.ts = s.ts) IS NULL
           AND (s.ended_ts IS NOT NULL OR (SELECT true FROM alerts a WHERE a.vehicle_id = s.vehicle_id
                                           AND a.key = s.key AND a.ended_ts IS NULL) IS NULL) AS due
    FROM alerts_stage s WHERE s.round = {{n}} AND NOT s.is_end
), ranked AS MATERIALIZED (
    SELECT c.*, row_number() OVER (PARTITION BY c.due, c.day ORDER BY c.raised_at, c.ts, c.id) AS n FROM checked c
), per_day AS (
    SELECT day, count(*) AS count FROM ranked WHERE due GROUP BY day
), bumped AS (
    INSERT INTO alert_counters AS c (day, last) SELECT day, count FROM per_day
    ON CONFLICT (day) DO UPDATE SET last = c.last + excluded.last
    RETURNING day, last
)
INSERT INTO alerts ({_ALERT_COLUMNS}, number)
SELECT {_ALERT_VALUES}, {_number_text("s.day", "(b.last - p.count + s.n)")}
FROM ranked s LEFT JOIN per_day p ON s.due AND p.day = s.day LEFT JOIN bumped b ON s.due AND b.day = s.day
ORDER BY s.seq
ON CONFLICT DO NOTHING
"""


# Ends of one round close the open alert of their (vehicle, key), record where
# it ended and add their figures to the start's details without overwriting
# any (the start's ``drum: ccw`` stays when the end says ``cw``); an end whose
# start was never stored is recorded as the whole interval. An end whose own
# alert is already closed was applied before (the batch is written again): it
# must not close the alert that opened after it.
#
# The open alert is looked up per end (a correlated subquery on
# alerts_one_active), not by a join the planner chooses: the stage is a temp
# table without statistics, and with the statistics of ``alerts`` taken while
# few alerts were open (a restart's burst, any morning: autoanalyze waits for
# 10 % of the table to change) the join walked every open alert once per staged
# end, 100 ms per batch at 20,000 open alerts against 0.5 ms (measured).
def _close_open(rows: str) -> str:
    """CTEs ``ends`` (the round's staged ``rows`` and the open alert of each
    one's (vehicle, key)) and ``closed`` (those alerts closed, by seq)."""
    return f"""
WITH ends AS MATERIALIZED (
    SELECT s.*, (SELECT o.id FROM alerts o WHERE o.vehicle_id = s.vehicle_id AND o.key = s.key
                 AND o.ended_ts IS NULL) AS open_id
    FROM alerts_stage s WHERE s.round = {{n}} AND {rows}
), closed AS (
    UPDATE alerts a SET ended_ts = s.ended_ts, ended_at = s.ended_at, end_lon = s.end_lon, end_lat = s.end_lat,
                        details = s.details || a.details
    FROM ends s
    WHERE a.id = s.open_id
      AND NOT EXISTS (SELECT 1 FROM alerts done WHERE done.id = s.id::uuid AND done.ended_ts IS NOT NULL)
    RETURNING s.seq
)"""


_ALERT_END = (
    _close_open("s.is_end")
    + f"""
INSERT INTO alerts ({_ALERT_COLUMNS})
SELECT {_ALERT_VALUES} FROM alerts_stage s
WHERE s.round = {{n}} AND s.is_end AND s.seq NOT IN (SELECT seq FROM closed) ORDER BY s.seq
ON CONFLICT DO NOTHING
"""
)
# Starts of one round staged with their end (``merged``, see alert_stage_rows),
# right after the round's insert: the insert stored them closed, unless a write
# of an earlier batch had stored the start open (a replay cut into other
# batches), which this closes as their end would have.
_CLOSE_CARRIED = _close_open("s.merged AND NOT s.is_end") + "\nSELECT count(*) FROM closed\n"


# -- the hourly mileage summary (fix_hours) ------------------------------------------

# Invalid, jump, filtered, drift: kept out of mileage as out of every track
# (late fixes count: they are where the vehicle was, in fix-time order).
UNUSABLE = UNUSABLE_FLAGS
HOUR_COLUMNS = (
    "vehicle_id", "hour", "fixes", "first_ts", "first_lon", "first_lat", "last_ts", "last_lon", "last_lat",
    "last_speed_kmh", "inner_m", "inner_driving_s", "max_speed_kmh",
)  # fmt: skip
_HOUR_COLS = ", ".join(HOUR_COLUMNS)


@dataclass(frozen=True, slots=True)
class MileageRule:
    """What counts as driving in the summary: the step starts at or above
    ``moving_kmh`` and lasts at most ``gap_s`` (``[rules] moving_kmh``,
    ``[history] gap_s``; the report bridges hours with the same rule)."""

    moving_kmh: float = 5.0
    gap_s: float = 300.0


DEFAULT_MILEAGE = MileageRule()


def _hour_stats(source: str, rule: MileageRule) -> str:
    """Per (vehicle, hour) of ``source`` (columns vehicle_id, hour, ts, lon,
    lat, speed_kmh; usable fixes only, one per vehicle and time) the
    ``fix_hours`` columns.

    The first and last fix of an hour are marked in the window pass that
    already sorts them (``lag``/``lead`` of nothing) and picked with
    ``FILTER``: an ordered aggregate (``array_agg(lon ORDER BY ts)``) sets
    up a sort per group and column, and in a single-fix batch every group is
    one fix (six of them: 2.5 of 3.4 ms of this step for 400 fixes, EXPLAIN
    ANALYZE, 2026-12-03)."""
    moving, gap = float(rule.moving_kmh), float(rule.gap_s)
    return f"""
    SELECT vehicle_id, hour, count(*)::int4,
           min(ts), max(lon) FILTER (WHERE is_first), max(lat) FILTER (WHERE is_first),
           max(ts), max(lon) FILTER (WHERE is_last), max(lat) FILTER (WHERE is_last),
           max(speed_kmh) FILTER (WHERE is_last),
           coalesce(sum(gpsd_step_m(plon, plat, lon, lat)), 0),
           coalesce(sum(dt) FILTER (WHERE pspeed >= {moving!r} AND dt <= {gap!r}), 0),
           max(speed_kmh)
    FROM (
        SELECT s.*, lag(lon) OVER w AS plon, lag(lat) OVER w AS plat, lag(speed_kmh) OVER w AS pspeed,
               extract(epoch FROM ts - lag(ts) OVER w)::float8 AS dt,
               lag(ts) OVER w IS NULL AS is_first, lead(ts) OVER w IS NULL AS is_last
        FROM ({source}) s WINDOW w AS (PARTITION BY vehicle_id, hour ORDER BY ts)
    ) steps
    GROUP BY vehicle_id, hour"""


def _fixes_of_hours(keys: str) -> str:
    """The usable fixes of each (vehicle_id, hour) row of ``keys``, read hour
    by hour through the (vehicle_id, ts) index.

    A LATERAL subquery behind ``OFFSET 0`` (which keeps the planner from
    flattening it into a join): as a plain join the planner scanned the whole
    chunk and hashed it, 0.75 s for 100 hours against a 3 M-row chunk, and
    the writer holds its transaction meanwhile (2026-12-02)."""
    return (
        f"SELECT d.vehicle_id, d.hour, f.ts, f.lon, f.lat, f.speed_kmh FROM ({keys}) d CROSS JOIN LATERAL ("
        " SELECT ts, lon, lat, speed_kmh FROM fixes WHERE vehicle_id = d.vehicle_id"
        f" AND ts >= d.hour AND ts < d.hour + interval '1 hour' AND flags & {UNUSABLE} = 0 OFFSET 0) f"
    )


def hours_sql(src: str, rule: MileageRule) -> str:
    """Fold the new fixes in ``src`` (the stage, or ``fixes_fresh``) into ``fix_hours``.

    Every hour of the batch is offered to the append; the hours it refuses
    (they already hold a fix at or after the batch's first) come back as
    the ones missing from its ``RETURNING`` and are recomputed from
    ``fixes``. One look-up of ``fix_hours`` per hour instead of a join
    before the append as well: with the ``FILTER`` picks of
    :func:`_hour_stats`, 13.8-15.5 -> 8.9-10.3 µs of PostgreSQL time per
    fix for this statement (pg_stat_statements, the single-fix drain of
    ``tools/bench_e2e.py`` replayed in 640-row batches, 2026-12-03). A
    refused hour is only locked by the append, not changed, so the recompute
    may update it in the same statement."""
    moving, gap = float(rule.moving_kmh), float(rule.gap_s)
    new = (
        f"SELECT vehicle_id, date_trunc('hour', ts, 'UTC') AS hour, ts, lon, lat, speed_kmh"
        f" FROM {src} WHERE flags & {UNUSABLE} = 0"
    )
    again = _fixes_of_hours("SELECT vehicle_id, hour FROM dirty")
    assign = ", ".join(f"{c} = excluded.{c}" for c in HOUR_COLUMNS[2:])
    return f"""
WITH b ({_HOUR_COLS}) AS ({_hour_stats(new, rule)}),
appended AS (
    INSERT INTO fix_hours AS h ({_HOUR_COLS}) SELECT {_HOUR_COLS} FROM b
    ON CONFLICT (vehicle_id, hour) DO UPDATE SET
        fixes = h.fixes + excluded.fixes,
        inner_m = h.inner_m + excluded.inner_m + gpsd_step_m(h.last_lon, h.last_lat, excluded.first_lon, excluded.first_lat),
        inner_driving_s = h.inner_driving_s + excluded.inner_driving_s
            + CASE WHEN h.last_speed_kmh >= {moving!r} AND extract(epoch FROM excluded.first_ts - h.last_ts) <= {gap!r}
                   THEN extract(epoch FROM excluded.first_ts - h.last_ts)::float8 ELSE 0 END,
        last_ts = excluded.last_ts, last_lon = excluded.last_lon, last_lat = excluded.last_lat,
        last_speed_kmh = excluded.last_speed_kmh,
        max_speed_kmh = greatest(h.max_speed_kmh, excluded.max_speed_kmh)
    WHERE excluded.first_ts > h.last_ts
    RETURNING vehicle_id, hour
),
dirty AS (  -- the hours the append refused: a fix before their last one
    SELECT vehicle_id, hour FROM b WHERE NOT EXISTS (
        SELECT 1 FROM appended a WHERE a.vehicle_id = b.vehicle_id AND a.hour = b.hour)
)
INSERT INTO fix_hours AS h ({_HOUR_COLS}) {_hour_stats(again, rule)}
ON CONFLICT (vehicle_id, hour) DO UPDATE SET {assign}
"""  # noqa: E501


def rebuild_hours_sql(rule: MileageRule) -> str:
    """Recompute ``fix_hours`` from ``fixes`` for [%(t0)s, %(t1)s) (fixes
    loaded without the writer: imports, benchmarks, tests)."""
    source = (
        "SELECT vehicle_id, date_trunc('hour', ts, 'UTC') AS hour, ts, lon, lat, speed_kmh FROM fixes"
        f" WHERE ts >= %(t0)s AND ts < %(t1)s AND flags & {UNUSABLE} = 0"
    )
    assign = ", ".join(f"{c} = excluded.{c}" for c in HOUR_COLUMNS[2:])
    return (
        f"INSERT INTO fix_hours AS h ({_HOUR_COLS}) {_hour_stats(source, rule)}"
        f" ON CONFLICT (vehicle_id, hour) DO UPDATE SET {assign}"
    )


def rebuild_hours(conn: psycopg.Connection[Any], start: datetime, end: datetime, rule: MileageRule) -> int:
    """Recompute the summary of whole UTC hours overlapping [start, end); returns the hours written."""
    t0 = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    t1 = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if t1 < end:
        t1 += timedelta(hours=1)
    with conn.transaction():
        cur = conn.execute(rebuild_hours_sql(rule).encode(), {"t0": t0, "t1": t1})
    return max(cur.rowcount, 0)


# What a batch stored without a number (see ``_ALERT_INSERT``) is numbered
# after its inserts, in the same transaction: the alerts it staged, each found by its primary key
# (``id = ANY(ARRAY(...))``): not "every alert without a number", whose index
# holds a dead entry for each alert numbered since the last vacuum, and not a
# join the planner picks, which hashed the whole of ``alerts`` to number ten
# (40-140 ms per batch once the drains of bench_e2e had stored 300,000 alerts,
# most of PostgreSQL's time in the live case that followed; measured). The
# UPDATE joins on the key alone: ``a.id = ANY(ARRAY(...))`` there as well made
# PostgreSQL search the array once per row, 90 ms for 400 alerts.
_NUMBERING = f"""
, per_day AS (
    SELECT day, max(n) AS count FROM todo GROUP BY day
), bumped AS (
    INSERT INTO alert_counters AS c (day, last) SELECT day, count FROM per_day
    ON CONFLICT (day) DO UPDATE SET last = c.last + excluded.last
    RETURNING day, last
)
UPDATE alerts a SET number = {_number_text("t.day", "b.last - p.count + t.n")}
FROM todo t JOIN per_day p USING (day) JOIN bumped b USING (day)
WHERE a.id = t.id
"""


def _todo(source: str) -> str:
    """The CTE of the alerts in ``source`` still without a number, numbered 1.. per local day."""
    return f"""todo AS MATERIALIZED (
    SELECT id, (raised_at AT TIME ZONE %(tz)s)::date AS day,
           row_number() OVER (PARTITION BY (raised_at AT TIME ZONE %(tz)s)::date ORDER BY raised_at, ts, id) AS n
    FROM {source} WHERE number IS NULL AND kind <> 'zone'
)"""


_NUMBER_ALERTS = (
    """
WITH staged AS MATERIALIZED (  -- by primary key alone: the filter in todo must not pick alerts_unnumbered
    SELECT id, raised_at, ts, number, kind FROM alerts
    WHERE id = ANY(ARRAY(SELECT DISTINCT id::uuid FROM alerts_stage WHERE kind <> 'zone'))
), """
    + _todo("staged")
    + _NUMBERING
)
# Alerts stored without a number (before migration 011 none were numbered):
# numbered once per writer session, by their own index.
_NUMBER_LEFT_OVER = "\nWITH " + _todo("alerts") + _NUMBERING


def number_left_over_alerts(conn: psycopg.Connection[Any], timezone: str) -> int:
    """Number the alerts stored without one; returns how many. Commits."""
    with conn.transaction():
        cur = conn.execute(_NUMBER_LEFT_OVER, {"tz": timezone})
    return max(cur.rowcount, 0)


# Stored fixes whose flags changed after the fact (a suspect jump that was a real move).
_CORRECT_FLAGS = """
UPDATE fixes f SET flags = c.flags
FROM (SELECT unnest(%(v)s::text[]) AS vehicle_id, unnest(%(t)s::timestamptz[]) AS ts,
             unnest(%(f)s::int2[]) AS flags) c
WHERE f.vehicle_id = c.vehicle_id AND f.ts = c.ts
"""


def rehour_sql(rule: MileageRule) -> str:
    """Recompute the summary hours of the corrected fixes (%(v)s, %(t)s arrays)."""
    source = _fixes_of_hours(
        "SELECT DISTINCT unnest(%(v)s::text[]) AS vehicle_id,"
        " date_trunc('hour', unnest(%(t)s::timestamptz[]), 'UTC') AS hour"
    )
    assign = ", ".join(f"{c} = excluded.{c}" for c in HOUR_COLUMNS[2:])
    return (
        f"INSERT INTO fix_hours AS h ({_HOUR_COLS}) {_hour_stats(source, rule)}"
        f" ON CONFLICT (vehicle_id, hour) DO UPDATE SET {assign}"
    )


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


def alert_insert_params(a: AlertRow, raised: datetime | None = None) -> tuple[Any, ...]:
    """The alert staging columns of a row (details as ``jsonb_binary``); ``raised``:
    ``a.raised_at`` as a datetime, when the caller has it (a batch shares one)."""
    e = a.event
    ts = utc(e.ts)
    raised = utc(a.raised_at) if raised is None else raised
    ended = ts if e.phase == "instant" else None
    start = ts
    end_lon = end_lat = None
    if e.phase == "end":  # an end whose start we never saw: record the whole interval
        started = e.details.get("started_at")
        start = ts if started is None else utc(float(started))
        ended = ts
        end_lon, end_lat = _coord(e.lon), _coord(e.lat)
    return (
        a.id, e.vehicle_id, e.kind, e.key, e.severity, e.zone_id, e.route_id, start,
        raised, _coord(e.lon), _coord(e.lat), ended, raised if ended else None, jsonb_binary(e.details),
        a.place, end_lon, end_lat,
    )  # fmt: skip


def sensors_json(s: Sensors | None) -> dict[str, Any] | None:
    if s is None:
        return None
    out = {k: getattr(s, k) for k in ("cover_closed", "loaded", "lift", "drum")}
    return {k: v for k, v in out.items() if v is not None} or None


# A fleet sends a handful of sensor combinations: each is encoded once.
_SENSORS_JSON: dict[Sensors, bytes | None] = {}


def _sensors_bytes(s: Sensors | None) -> bytes | None:
    """The sensors column's value for the COPY (``jsonb_binary``)."""
    if s is None:
        return None
    try:
        return _SENSORS_JSON[s]
    except KeyError:
        doc = sensors_json(s)
        data = None if doc is None else jsonb_binary(doc)
        if len(_SENSORS_JSON) < 1024:
            _SENSORS_JSON[s] = data
        return data


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def fix_row(f: Fix) -> tuple[Any, ...]:
    return (
        f.vehicle_id, utc(f.ts), utc(f.received_at), f.lon, f.lat, f.speed_kmh, f.heading,
        f.alt_m, f.sats, f.hdop, f.ignition, f.alarm, f.status, _sensors_bytes(f.sensors),
        f.mileage_km, f.source, int(f.flags),
    )  # fmt: skip


def _copy_fixes(copy: psycopg.Copy, rows: Sequence[Fix]) -> None:
    """Rows into a binary COPY: the fixes of one ingest cycle share their
    receipt time, so its datetime is built once per run of them."""
    write, fromtimestamp = copy.write_row, datetime.fromtimestamp
    last_received, received = None, None
    for f in rows:
        if f.received_at != last_received:
            last_received, received = f.received_at, fromtimestamp(f.received_at, UTC)
        write((
            f.vehicle_id, fromtimestamp(f.ts, UTC), received, f.lon, f.lat, f.speed_kmh, f.heading,
            f.alt_m, f.sats, f.hdop, f.ignition, f.alarm, f.status, _sensors_bytes(f.sensors),
            f.mileage_km, f.source, int(f.flags),
        ))  # fmt: skip


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
    mileage: MileageRule = DEFAULT_MILEAGE,
) -> int:
    """Write one batch in one transaction; returns the number of new rows in
    ``fixes``. Blocking: the writer calls it in its own thread."""
    with conn.transaction(), conn.cursor() as cur:
        inserted = _write_rows(cur, rows, alerts, mileage, timezone)
        if any(a.event.kind != "zone" for a in alerts):
            cur.execute(_NUMBER_ALERTS, {"tz": timezone})
        if corrections:
            params = {"v": [c.vehicle_id for c in corrections], "t": [utc(c.ts) for c in corrections]}
            cur.execute(_CORRECT_FLAGS, {**params, "f": [c.flags for c in corrections]})
            cur.execute(rehour_sql(mileage).encode(), params)
    return inserted


def _write_rows(
    cur: psycopg.Cursor[Any], rows: Sequence[Fix], alerts: Sequence[AlertRow], rule: MileageRule, timezone: str
) -> int:
    statements: list[str] = []
    if alerts:
        tz = "'" + timezone.replace("'", "''") + "'"  # a literal: the statements are prepared, without parameters
        stage, rounds = alert_stage_rows(alerts)
        copy_alert_stage(cur, stage)
        for n, (starts, ends, carried) in enumerate(rounds):
            steps = ((_ALERT_INSERT, starts), (_CLOSE_CARRIED, carried), (_ALERT_END, ends))
            statements += [sql.format(n=n, tz=tz) for sql, count in steps if count]
    if not rows:
        _prepared(cur, statements)
        return 0
    copy_fixes_stage(cur, rows)
    rest = [_LAST_SQL, *statements]
    cur.execute("SAVEPOINT fresh")  # the fast path first
    try:
        _prepared(cur, [_MOVE_SQL])
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT fresh")
        _prepared(cur, [_MOVE_DEDUP_SQL])
        inserted = max(cur.rowcount, 0)
        _prepared(cur, [hours_sql("fixes_fresh", rule), *rest])
        return inserted
    cur.execute("RELEASE fresh")
    _prepared(cur, [hours_sql("fixes_stage", rule), *rest])
    return len(rows)


def copy_fixes_stage(cur: psycopg.Cursor[Any], rows: Sequence[Fix]) -> None:
    """Fixes into ``fixes_stage`` (binary COPY)."""
    with cur.copy(_COPY_FIXES) as copy:
        copy.set_types(list(TYPES))
        _copy_fixes(copy, rows)


def copy_alert_stage(cur: psycopg.Cursor[Any], stage: Sequence[tuple[Any, ...]]) -> None:
    """Staging rows of :func:`alert_stage_rows` into ``alerts_stage`` (binary COPY)."""
    with cur.copy(_COPY_ALERTS) as copy:
        copy.set_types(list(ALERT_STAGE_TYPES))
        for row in stage:
            copy.write_row(row)


def _prepared(cur: psycopg.Cursor[Any], statements: Sequence[str]) -> None:
    """Each statement as a prepared statement of the writer's session.

    They have no parameters and read the staging tables, so one plan serves
    every batch. Sent as one simple query instead (one round trip, as before
    2026-12-02) PostgreSQL planned them again for each batch: 2.8 ms for the
    hourly summary alone (its recompute branch joins every chunk of
    ``fixes``), 50-59 µs of PostgreSQL CPU per row of a 100-row live batch
    against 40 prepared.
    Plans follow new and dropped chunks: PostgreSQL invalidates them."""
    for sql in statements:
        cur.execute(sql.encode(), prepare=True)


_ENDED_TS, _ENDED_AT, _DETAILS, _END_LON, _END_LAT = 11, 12, 13, 15, 16  # in alert_insert_params' tuple


def alert_stage_rows(alerts: Sequence[AlertRow]) -> tuple[list[tuple[Any, ...]], list[list[int]]]:
    """Staging rows in event order, and per round how many starts, ends and
    starts carrying their end it holds.

    A start whose end comes in the same batch (a vehicle through a zone during
    a burst or a backfill) is staged as the whole interval, ``merged``: one
    insert instead of an insert and an update that touches every index of
    ``alerts``, and its end is not staged at all (staged, it was half of a
    dense city's staging rows and of their COPY; 2026-12-04). If a write of an
    earlier batch stored the start open (a replay cut into other batches),
    ``_CLOSE_CARRIED`` closes it."""
    seen: dict[tuple[str, str], int] = {}
    open_starts: dict[tuple[str, str], int] = {}  # (vehicle, key) -> index in rows of a start not yet ended
    rounds: list[list[int]] = []
    rows: list[tuple[Any, ...]] = []
    raised_ts, raised = None, None
    for seq, a in enumerate(alerts):
        if a.raised_at != raised_ts:  # the alerts of one cycle share their time
            raised_ts, raised = a.raised_at, utc(a.raised_at)
        e = a.event
        k = (e.vehicle_id, e.key)
        is_end = e.phase == "end"
        if is_end and (i := open_starts.pop(k, None)) is not None and rows[i][4] == a.id:
            start = list(rows[i])
            start[3] = True
            start[4 + _ENDED_TS], start[4 + _ENDED_AT] = utc(e.ts), raised
            start[4 + _END_LON], start[4 + _END_LAT] = _coord(e.lon), _coord(e.lat)
            start[4 + _DETAILS] = jsonb_binary({**e.details, **alerts[start[0]].event.details})  # the start's stay
            rows[i] = tuple(start)
            rounds[start[1]][2] += 1
            continue
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(rounds):
            rounds.append([0, 0, 0])
        rounds[n][is_end] += 1
        if e.phase == "start":
            open_starts[k] = len(rows)
        rows.append((seq, n, is_end, False, *alert_insert_params(a, raised)))
    return rows, rounds
