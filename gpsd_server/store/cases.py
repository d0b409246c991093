"""The ``cases`` table and its audit trail ``case_events``; the case reports.

Every change of a case is one transaction: the case row is locked, its state
checked (a change the state does not allow is refused with the state found),
the event appended with its digest chained to the one before
(:func:`gpsd_server.core.cases.audit_digest`) and the row brought up to date.
``case_events`` only ever grows: the database refuses UPDATE, DELETE and
TRUNCATE on it (migration 040).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from gpsd_server.core.cases import ALERT_KINDS, FINAL_STATES, GENESIS, GPS, audit_digest
from gpsd_server.model import FixFlag

Conn = psycopg.AsyncConnection[Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = (
    "id, number, channel, category, priority, description, address, reporter, lon, lat, place, district_id,"
    " district, grid_id, grid, state, vehicle_id, accepted_at, accepted_by, dispatched_at, assigned_at, arrived_at,"
    " arrival_source, arrival_distance_m, on_site, handled_at, called_back_at, closed_at, cancelled_at, dispatch_id,"
    " command_id, command_status, events, updated_at"
)
# The columns a change may set (the code names them; never from a request).
SETTABLE = frozenset(
    (
        "state", "vehicle_id", "dispatched_at", "assigned_at", "arrived_at", "arrival_source", "arrival_distance_m",
        "on_site", "handled_at", "called_back_at", "closed_at", "cancelled_at", "dispatch_id", "command_id",
        "command_status",
    )
)  # fmt: skip
_EVENT_COLUMNS = "case_id, seq, kind, at, recorded_at, by_name, comment, data, prev_digest, digest"
_ALERT_KINDS = sorted(ALERT_KINDS)


def _case_alerts(kinds: str, alias: str = "") -> str:
    """The condition picking the cases' alerts (``kinds``: the parameter).
    They are never zone presence records; saying so lets PostgreSQL read them
    through the desk's index (migration 060) instead of every row of
    ``alerts``, most of which are zone records."""
    return f"{alias}kind = ANY({kinds}) AND {alias}kind <> 'zone'"


_NOT_ON_TRACK = int(FixFlag.LATE | FixFlag.NOFIX | FixFlag.JUMP | FixFlag.FILTERED)


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One row of ``cases``."""

    id: int
    number: str
    channel: str
    category: str
    priority: str
    description: str
    address: str
    reporter: str
    lon: float
    lat: float
    place: str | None
    district_id: str | None
    district: str | None
    grid_id: str | None
    grid: str | None
    state: str
    vehicle_id: str | None
    accepted_at: datetime
    accepted_by: str
    dispatched_at: datetime | None
    assigned_at: datetime | None
    arrived_at: datetime | None
    arrival_source: str | None
    arrival_distance_m: float | None
    on_site: bool | None
    handled_at: datetime | None
    called_back_at: datetime | None
    closed_at: datetime | None
    cancelled_at: datetime | None
    dispatch_id: int | None
    command_id: int | None
    command_status: str | None
    events: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One row of ``case_events``."""

    case_id: int
    seq: int
    kind: str
    at: datetime
    recorded_at: datetime
    by_name: str
    comment: str
    data: dict[str, Any]
    prev_digest: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class NewEvent:
    kind: str
    at: datetime
    by: str
    comment: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewCase:
    channel: str
    category: str
    priority: str
    description: str
    address: str
    reporter: str
    lon: float
    lat: float
    place: str | None
    district_id: str | None
    district: str | None
    grid_id: str | None
    grid: str | None


class Refused(Exception):
    """The case is missing (``state`` None) or not in a state that allows the change."""

    def __init__(self, state: str | None) -> None:
        super().__init__(state or "missing")
        self.state = state


def micros(at: datetime) -> int:
    """Microseconds since the epoch, exactly (what the digest seals)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def seal(previous: bytes, case_id: int, seq: int, event: NewEvent) -> bytes:
    return audit_digest(
        previous, case_id=case_id, seq=seq, kind=event.kind, at_us=micros(event.at), by=event.by,
        comment=event.comment, data=dict(event.data),
    )  # fmt: skip


def intact(events: Sequence[EventRecord]) -> bool:
    """Does every event's digest follow from the one before it and its content?"""
    previous = GENESIS
    for seq, e in enumerate(events, start=1):
        if e.seq != seq or e.prev_digest != previous:
            return False
        new = NewEvent(e.kind, e.at, e.by_name, e.comment, e.data)
        if seal(previous, e.case_id, e.seq, new) != e.digest:
            return False
        previous = e.digest
    return True


async def _insert_event(conn: Conn, case_id: int, seq: int, previous: bytes, event: NewEvent, now: datetime) -> bytes:
    digest = seal(previous, case_id, seq, event)
    await conn.execute(
        f"INSERT INTO case_events ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (case_id, seq, event.kind, event.at, now, event.by, event.comment, Jsonb(dict(event.data)), previous, digest),
    )
    return digest


async def create(conn: Conn, case: NewCase, *, by: str, at: datetime, timezone: str) -> CaseRecord:
    """File a case: a number for its local day, the row, and the trail's first event."""
    day = at.astimezone(ZoneInfo(timezone)).date()
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO case_counters AS c (day, last) VALUES (%s, 1)"
            " ON CONFLICT (day) DO UPDATE SET last = c.last + 1 RETURNING last",
            (day,),
        )
        row = await cur.fetchone()
        assert row is not None
        number = f"{day:%Y%m%d}-{int(row[0]):04d}"
        cur = await conn.execute(
            "INSERT INTO cases (number, channel, category, priority, description, address, reporter, lon, lat, place,"
            " district_id, district, grid_id, grid, accepted_at, accepted_by, last_digest, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                number, case.channel, case.category, case.priority, case.description, case.address, case.reporter,
                case.lon, case.lat, case.place, case.district_id, case.district, case.grid_id, case.grid, at, by,
                GENESIS, at,
            ),
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
        case_id = int(row[0])
        data = {
            "channel": case.channel, "category": case.category, "priority": case.priority, "lon": case.lon,
            "lat": case.lat, "address": case.address, "place": case.place, "reporter": case.reporter,
        }  # fmt: skip
        digest = await _insert_event(conn, case_id, 1, GENESIS, NewEvent("created", at, by, case.description, data), at)
        await conn.execute("UPDATE cases SET events = 1, last_digest = %s WHERE id = %s", (digest, case_id))
        record = await get(conn, case_id)
    assert record is not None
    return record


async def change(
    conn: Conn,
    case_id: int,
    event: NewEvent,
    *,
    expect: Sequence[str] | None,
    columns: Mapping[str, Any] | None = None,
    now: datetime,
) -> CaseRecord:
    """Append ``event`` and set ``columns``, if the case is in one of the
    ``expect`` states (None: any); else :class:`Refused`."""
    sets = dict(columns or {})
    bad = set(sets) - SETTABLE
    if bad:
        raise ValueError(f"not settable: {sorted(bad)}")
    async with conn.transaction():
        cur = await conn.execute("SELECT state, events, last_digest FROM cases WHERE id = %s FOR UPDATE", (case_id,))
        row = await cur.fetchone()
        if row is None:
            raise Refused(None)
        state, count, previous = str(row[0]), int(row[1]), bytes(row[2])
        if expect is not None and state not in expect:
            raise Refused(state)
        digest = await _insert_event(conn, case_id, count + 1, previous, event, now)
        assignments = "".join(f", {name} = %s" for name in sets)
        await conn.execute(
            f"UPDATE cases SET events = %s, last_digest = %s, updated_at = %s{assignments} WHERE id = %s",
            (count + 1, digest, now, *sets.values(), case_id),
        )
        record = await get(conn, case_id)
    assert record is not None
    return record


async def gps_once(conn: Conn, case_id: int, event: NewEvent) -> bool:
    """Has this GPS finding (kind and fix time) been written already?"""
    cur = await conn.execute(
        "SELECT 1 FROM case_events WHERE case_id = %s AND kind = %s AND at = %s AND by_name = %s",
        (case_id, event.kind, event.at, GPS),
    )
    return await cur.fetchone() is not None


async def get(conn: Conn, case_id: int) -> CaseRecord | None:
    async with conn.cursor(row_factory=class_row(CaseRecord)) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM cases WHERE id = %s", (case_id,))
        return await cur.fetchone()


async def events(conn: Conn, case_id: int) -> list[EventRecord]:
    async with conn.cursor(row_factory=class_row(EventRecord)) as cur:
        await cur.execute(f"SELECT {_EVENT_COLUMNS} FROM case_events WHERE case_id = %s ORDER BY seq", (case_id,))
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class CaseFilter:
    state: str = "open"  # open | all | a state
    category: str | None = None
    priority: str | None = None
    district_id: str | None = None
    grid_id: str | None = None
    vehicle_id: str | None = None
    text: str | None = None  # in number, description, address, place, reporter
    since: datetime | None = None
    until: datetime | None = None
    ids: Sequence[int] | None = None  # only these (e.g. the overdue ones)
    limit: int = 200


async def listing(conn: Conn, f: CaseFilter) -> list[CaseRecord]:
    """Cases newest first."""
    where: list[str] = []
    args: list[Any] = []
    if f.state == "open":
        where.append("state <> ALL(%s)")
        args.append(sorted(FINAL_STATES))
    elif f.state != "all":
        where.append("state = %s")
        args.append(f.state)
    for column, value in (
        ("category", f.category), ("priority", f.priority), ("district_id", f.district_id), ("grid_id", f.grid_id),
        ("vehicle_id", f.vehicle_id),
    ):  # fmt: skip
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if f.text:
        like = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            "(number ILIKE %s OR description ILIKE %s OR address ILIKE %s OR coalesce(place, '') ILIKE %s"
            " OR reporter ILIKE %s)"
        )
        args += [like] * 5
    if f.since is not None:
        where.append("accepted_at >= %s")
        args.append(f.since)
    if f.until is not None:
        where.append("accepted_at < %s")
        args.append(f.until)
    if f.ids is not None:
        where.append("id = ANY(%s)")
        args.append(list(f.ids))
    sql = f"SELECT {COLUMNS} FROM cases {'WHERE ' + ' AND '.join(where) if where else ''}"
    async with conn.cursor(row_factory=class_row(CaseRecord)) as cur:
        await cur.execute(f"{sql} ORDER BY accepted_at DESC, id DESC LIMIT %s".encode(), [*args, f.limit])
        return await cur.fetchall()


async def still_open(conn: Conn) -> list[CaseRecord]:
    """What restore hands back to the case book."""
    return await listing(conn, CaseFilter(state="open", limit=1_000_000))


async def overdue_alerts(conn: Conn, *, open_only: bool) -> list[tuple[int, str, str, str]]:
    """(case id, step, vehicle id, alert id) of the cases' overdue alerts."""
    cur = await conn.execute(
        "SELECT (details->>'case_id')::bigint, details->>'step', vehicle_id, id::text FROM alerts"
        f" WHERE {_case_alerts('%s')} {'AND ended_ts IS NULL' if open_only else ''} ORDER BY ts",
        (_ALERT_KINDS,),
    )
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in await cur.fetchall()]


async def alerts_of(conn: Conn, case_id: int) -> list[dict[str, Any]]:
    """A case's overdue alerts, for its card."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id::text AS id, number, kind, details->>'step' AS step, ts, ended_ts, state, vehicle_id FROM alerts"
        f" WHERE {_case_alerts('%s')} AND details->>'case_id' = %s ORDER BY ts",
        (_ALERT_KINDS, str(case_id)),
    )
    return await cur.fetchall()


async def command_changes(conn: Conn) -> list[dict[str, Any]]:
    """Open cases whose dispatch text changed status since the trail last said."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT c.id AS case_id, c.vehicle_id, t.id AS command_id, t.status, t.attempts, t.transport, t.result,"
        " t.error, t.sent_at, t.acked_at, t.updated_at"
        " FROM cases c JOIN terminal_commands t ON t.id = c.command_id"
        " WHERE c.command_status IS DISTINCT FROM t.status AND c.state <> ALL(%s) ORDER BY c.id",
        (sorted(FINAL_STATES),),
    )
    return await cur.fetchall()


async def record_dispatch(
    conn: Conn, *, case_id: int, lon: float, lat: float, vehicle_id: str, distance_m: float, note: str, by: str
) -> int:
    """The case's dispatch, as a 12319 dispatch (``dispatches``, GET /api/dispatch)."""
    cur = await conn.execute(
        "INSERT INTO dispatches (lon, lat, vehicle_id, distance_m, note, created_by, case_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (lon, lat, vehicle_id, distance_m, note, by, case_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def track_since(
    conn: Conn, vehicle_id: str, since: datetime, until: datetime | None = None
) -> list[tuple[float, float, float, float | None, int]]:
    """A car's stored fixes (ts, lon, lat, speed, flags) in fix-time order:
    what the arrival watch is replayed with after a restart."""
    cur = await conn.execute(
        "SELECT extract(epoch FROM ts)::float8, lon, lat, speed_kmh, flags FROM fixes"
        " WHERE vehicle_id = %s AND ts >= %s AND (%s::timestamptz IS NULL OR ts <= %s)"
        f" AND flags & {_NOT_ON_TRACK} = 0 ORDER BY ts",
        (vehicle_id, since, until, until),
    )
    return [(float(r[0]), float(r[1]), float(r[2]), r[3], int(r[4])) for r in await cur.fetchall()]


# -- reports ------------------------------------------------------------------------------------

_STEP_TIMES = f"""
WITH c AS (SELECT * FROM cases WHERE accepted_at >= %(start)s AND accepted_at < %(end)s),
spans AS (
    SELECT 'dispatch' AS step, 1 AS n, extract(epoch FROM dispatched_at - accepted_at) AS s FROM c
        WHERE dispatched_at IS NOT NULL
    UNION ALL SELECT 'arrive', 2, extract(epoch FROM arrived_at - dispatched_at) FROM c
        WHERE arrived_at IS NOT NULL AND dispatched_at IS NOT NULL
    UNION ALL SELECT 'handle', 3, extract(epoch FROM handled_at - arrived_at) FROM c
        WHERE handled_at IS NOT NULL AND arrived_at IS NOT NULL
    UNION ALL SELECT 'callback', 4, extract(epoch FROM called_back_at - handled_at) FROM c
        WHERE called_back_at IS NOT NULL AND handled_at IS NOT NULL
    UNION ALL SELECT 'close', 5, extract(epoch FROM closed_at - called_back_at) FROM c
        WHERE closed_at IS NOT NULL AND called_back_at IS NOT NULL
    UNION ALL SELECT 'total', 6, extract(epoch FROM closed_at - accepted_at) FROM c WHERE closed_at IS NOT NULL
), late AS (
    SELECT a.details->>'step' AS step, count(DISTINCT (a.details->>'case_id')) AS overdue
    FROM alerts a JOIN c ON a.details->>'case_id' = c.id::text
    WHERE {_case_alerts("%(kinds)s", "a.")} GROUP BY 1
)
SELECT s.step, count(*) AS count, percentile_cont(0.5) WITHIN GROUP (ORDER BY s.s) AS median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s.s) AS p90_s, max(s.s) AS max_s,
       coalesce(max(l.overdue), 0) AS overdue
FROM spans s LEFT JOIN late l ON l.step = s.step
GROUP BY s.step, s.n ORDER BY s.n
"""
_LATE_CASES = f"""
SELECT DISTINCT (details->>'case_id')::bigint AS case_id FROM alerts WHERE {_case_alerts("%(kinds)s")}
"""
_BY = {
    "category": ("category", "category"),
    "district": ("coalesce(district_id, '')", "coalesce(max(district), '')"),
    "grid": ("coalesce(grid_id, '')", "coalesce(max(grid), '')"),
}
_GROUPED = """
WITH c AS (SELECT * FROM cases WHERE accepted_at >= %(start)s AND accepted_at < %(end)s),
late AS ({late})
SELECT {key} AS key, {name} AS name, count(*) AS count,
       count(*) FILTER (WHERE state NOT IN ('closed', 'cancelled')) AS open,
       count(*) FILTER (WHERE state = 'closed') AS closed,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE id IN (SELECT case_id FROM late)) AS overdue,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - accepted_at))
           FILTER (WHERE closed_at IS NOT NULL) AS close_median_s
FROM c GROUP BY 1 ORDER BY count(*) DESC, 1
"""
_BY_VEHICLE = f"""
WITH c AS (SELECT * FROM cases WHERE accepted_at >= %(start)s AND accepted_at < %(end)s),
e AS (
    SELECT e.kind, e.by_name, e.data->>'vehicle_id' AS vehicle_id, (e.data->>'after_s')::float8 AS after_s
    FROM case_events e JOIN c ON c.id = e.case_id
    WHERE e.data ? 'vehicle_id' AND e.kind IN ('dispatched', 'reassigned', 'arrived', 'left')
), late AS (
    SELECT a.vehicle_id, count(*) AS overdue FROM alerts a JOIN c ON a.details->>'case_id' = c.id::text
    WHERE {_case_alerts("%(kinds)s", "a.")} GROUP BY 1
)
SELECT e.vehicle_id,
       count(*) FILTER (WHERE e.kind IN ('dispatched', 'reassigned')) AS dispatched,
       count(*) FILTER (WHERE e.kind = 'arrived') AS arrived,
       count(*) FILTER (WHERE e.kind = 'arrived' AND e.by_name = 'gps') AS arrived_gps,
       count(*) FILTER (WHERE e.kind = 'left') AS left_before_handled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY e.after_s) FILTER (WHERE e.kind = 'arrived') AS arrive_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY e.after_s) FILTER (WHERE e.kind = 'arrived') AS arrive_p90_s,
       coalesce(max(late.overdue), 0) AS overdue
FROM e LEFT JOIN late ON late.vehicle_id = e.vehicle_id
GROUP BY 1 ORDER BY dispatched DESC, 1
"""


async def report(conn: Conn, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
    """Cases accepted in [start, end): times per step (median, p90), overdue
    counts, and counts per category, district, grid and patrol car."""
    args = {"start": start, "end": end, "kinds": _ALERT_KINDS}
    out: dict[str, list[dict[str, Any]]] = {}
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_STEP_TIMES, args)
    out["steps"] = await cur.fetchall()
    for by, (key, name) in _BY.items():
        await cur.execute(_GROUPED.format(key=key, name=name, late=_LATE_CASES).encode(), args)
        out[by] = await cur.fetchall()
    await cur.execute(_BY_VEHICLE, args)
    out["vehicle"] = await cur.fetchall()
    return out
