"""The track writer: a bounded queue in front of batched binary COPY.

``put(fixes)`` returns a future that resolves once those fixes are committed,
so a caller can acknowledge its source only when the data is durable. When
the queue is full ``put`` waits: ingest slows down and the broker buffers,
instead of memory growing.

Each batch is copied into a temporary staging table and moved into ``fixes``
with ``ON CONFLICT DO NOTHING`` (COPY itself cannot skip duplicates), and
``vehicles`` gets the newest non-late position per vehicle, all in one
transaction. A failed batch is retried with backoff on a new connection; the
write is idempotent, so a retry after an unclear commit stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps

from gpsd_server.model import Event, Fix, FixFlag, Sensors

log = logging.getLogger(__name__)

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

_STAGE_SQL = "CREATE TEMP TABLE IF NOT EXISTS fixes_stage (LIKE fixes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
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


@dataclass(slots=True)
class WriterStats:
    rows_in: int = 0  # rows handed to put()
    rows_copied: int = 0  # rows committed through COPY (duplicates included)
    rows_inserted: int = 0  # new rows in fixes
    batches: int = 0
    failures: int = 0
    alerts_written: int = 0
    last_batch_s: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.rows_copied - self.rows_inserted


class TrackWriter:
    def __init__(
        self,
        *,
        dsn: str,
        batch_max_rows: int = 5000,
        flush_interval_s: float = 0.2,
        queue_max_rows: int = 200000,
        retry_min_s: float = 0.5,
        retry_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._batch_max = batch_max_rows
        self._flush_interval = flush_interval_s
        self._queue_max = queue_max_rows
        self._retry = (retry_min_s, retry_max_s)
        self._connect_timeout = connect_timeout_s
        self._queue: deque[tuple[Sequence[Fix], Sequence[AlertRow], asyncio.Future[None]]] = deque()
        self._queued_rows = 0
        self._has_data = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._closing = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.stats = WriterStats()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def put(self, fixes: Sequence[Fix], alerts: Sequence[AlertRow] = ()) -> asyncio.Future[None]:
        """Queue fixes and the alerts they raised; waits while the queue is
        full. The future resolves once both are committed (one transaction)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not fixes and not alerts:
            fut.set_result(None)
            return fut
        if self._closing:
            raise RuntimeError("track writer is closed")
        while self._queued_rows >= self._queue_max:
            self._has_room.clear()
            await self._has_room.wait()
        self._queue.append((fixes, alerts, fut))
        self._queued_rows += len(fixes)
        self.stats.rows_in += len(fixes)
        self._has_data.set()
        return fut

    async def close(self) -> None:
        """Stop taking fixes; ``run`` returns once the queue is written."""
        self._closing = True
        self._has_data.set()

    def _take_batch(self) -> tuple[list[Fix], list[AlertRow], list[asyncio.Future[None]]]:
        rows: list[Fix] = []
        alerts: list[AlertRow] = []
        futs: list[asyncio.Future[None]] = []
        while self._queue and (not rows or len(rows) + len(self._queue[0][0]) <= self._batch_max):
            fixes, more_alerts, fut = self._queue.popleft()
            rows.extend(fixes)
            alerts.extend(more_alerts)
            futs.append(fut)
        return rows, alerts, futs

    async def run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._has_data.clear()
                    await self._has_data.wait()
                    continue
                if self._queued_rows < self._batch_max and not self._closing:
                    # Let a batch fill up a little: fewer, larger transactions.
                    await asyncio.sleep(self._flush_interval)
                rows, alerts, futs = self._take_batch()
                await self._write_with_retry(rows, alerts)
                self._queued_rows -= len(rows)
                if self._queued_rows < self._queue_max:
                    self._has_room.set()
                for fut in futs:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            if self._conn is not None:
                await self._conn.close()

    async def _write_alerts(self, cur: psycopg.AsyncCursor[Any], alerts: Sequence[AlertRow]) -> None:
        if alerts:
            await _write_alerts_impl(cur, alerts)
            self.stats.alerts_written += len(alerts)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, connect_timeout=int(self._connect_timeout), application_name="gpsd-writer"
            )
            await self._conn.execute(_STAGE_SQL)
            await self._conn.commit()
        return self._conn

    async def _write_with_retry(self, rows: list[Fix], alerts: list[AlertRow]) -> None:
        delay = self._retry[0]
        while True:
            try:
                await self._write(rows, alerts)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self.stats.failures += 1
                log.warning("track writer: database unavailable (%s); retrying in %.1f s", _first_line(exc), delay)
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._retry[1])

    async def _write(self, rows: list[Fix], alerts: list[AlertRow]) -> None:
        t0 = time.perf_counter()
        conn = await self._connect()
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
            await self._write_alerts(cur, alerts)
        self.stats.rows_copied += len(rows)
        self.stats.rows_inserted += max(inserted, 0)
        self.stats.batches += 1
        self.stats.last_batch_s = time.perf_counter() - t0


async def _write_alerts_impl(cur: psycopg.AsyncCursor[Any], alerts: Sequence[AlertRow]) -> None:
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
