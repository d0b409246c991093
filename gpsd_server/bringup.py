"""Start-up against a database that may be away.

HTTP, ingest and the track writer do not wait for the database. What needs
it -- migrations, restoring rule state, the vehicle registry -- happens in
:meth:`DatabaseStart.run` as soon as it answers, in this order:

1. migrations (so nothing is ever written into a database without the schema);
2. the track writer starts and replays its spool (fixes and alerts of a
   previous run that stopped during an outage are in the database before
   anything is read back);
3. restore (rule state, open alert ids, last positions);
4. the API may use the database (``Database.ready``); the registry is synced.

If the database answers at once, intake waits for step 3, so the first fix is
judged with the restored state, as after any restart. If it does not answer,
the server serves degraded at once: intake runs, fixes and alerts go to a
writer that can only spool (:class:`WriterSwitch`), the live map is fed from
memory and ``/healthz`` is 503 naming the database. When it answers, the
spool-only writer hands its spool to the real one, and restore rebuilds the
vehicles that have not reported since the start as after any restart. For a
vehicle that has reported, an alert it had open before the restart goes on
under its old id if the live state raised it again (the store keeps one open
alert per vehicle and key), and is ended (``restored``, ``after_outage``)
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import psycopg
from psycopg.conninfo import make_conninfo

from gpsd_server import alerts as view
from gpsd_server.backoff import Backoff
from gpsd_server.core.engine import Engine
from gpsd_server.core.rules.base import OpenAlert
from gpsd_server.directory import VehicleDirectory, VehicleInfo
from gpsd_server.ledger import AlertLedger
from gpsd_server.model import Event, Fix, Severity
from gpsd_server.restore import restore
from gpsd_server.settings import DatabaseSettings
from gpsd_server.sinks.hub import LiveHub, LivePosition
from gpsd_server.sinks.tracks.writer import AlertRow, TrackWriter, WriterStats
from gpsd_server.store import alerts, vehicles
from gpsd_server.store.alerts import AlertRecord
from gpsd_server.store.batch import FlagCorrection, MileageRule
from gpsd_server.store.db import DB_ERRORS, Database, first_line
from gpsd_server.store.schema import SchemaInfo, migrate

log = logging.getLogger(__name__)
T = TypeVar("T")

# The spool-only writer's database: a socket that cannot exist, so every
# attempt fails at once and the writer spools (its log says why).
NOT_MIGRATED_HOST = "/nonexistent/gpsd-server-waits-for-migrations"
GC_THRESHOLDS = (50_000, 20, 100)  # see settle_memory
# How long restore waits for the spool of a previous run to be replayed.
REPLAY_WAIT_S = 60.0


def settle_memory() -> None:
    """After restore: the city, its geometry and the restored state live as long
    as the process: out of the collector's sight, and collections made rarer
    (measured: tools/bench_e2e.py reports gc_s per fix)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class WriterSwitch:
    """The pipeline's track sink (``put``) and the metrics' view of the writer.

    Holds the writer in force: none before the start-up decided, a spool-only
    one while the schema is not known to be in place, then the real one. A
    ``put`` during a change waits for the next writer. Counters are summed
    over the writers of this run. Records which vehicles sent anything until
    restore no longer needs to know (``seen``).
    """

    def __init__(
        self, settings: DatabaseSettings, *, spool_path: str | Path, timezone: str, mileage: MileageRule,
        spool: bool = True,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._spool_path = spool_path
        self._timezone = timezone  # the writer numbers alerts per local day
        self._mileage = mileage
        self._spool = spool  # False: a scale-out worker holds acknowledgements instead of spooling
        self._writer: TrackWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._past: list[WriterStats] = []
        self._ready = asyncio.Event()
        self._writing = asyncio.Event()
        self.writing = False  # the real writer is in force
        # Until restore: the vehicles that sent anything, and the alerts raised and still open.
        self.seen: set[str] | None = set()
        self.live_open: dict[tuple[str, str], str] = {}

    # -- the pipeline's side ----------------------------------------------------

    async def put(
        self, fixes: Sequence[Fix], alerts: Sequence[AlertRow] = (), corrections: Sequence[FlagCorrection] = ()
    ) -> asyncio.Future[None]:
        if self.seen is not None:
            self.seen.update(f.vehicle_id for f in fixes)
            for a in alerts:
                e = a.event
                self.seen.add(e.vehicle_id)
                if e.phase == "start":
                    self.live_open[(e.vehicle_id, e.key)] = a.id
                elif e.phase == "end":
                    self.live_open.pop((e.vehicle_id, e.key), None)
        while True:
            await self._ready.wait()
            writer = self._writer
            assert writer is not None
            try:
                return await writer.put(fixes, alerts, corrections)
            except RuntimeError:
                if self._ready.is_set():
                    raise  # closed for good (shutdown)
                # closed for a change of writer: put into the next one

    async def on_session(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``op`` on the real writer's session (once the schema is in place):
        :meth:`TrackWriter.on_session`."""
        await self._writing.wait()
        assert self._writer is not None
        return await self._writer.on_session(op)

    # -- changing writers ---------------------------------------------------------

    def _start(self, tg: asyncio.TaskGroup, dsn: str) -> None:
        settings = msgspec.structs.replace(self._settings, dsn=dsn)
        self._writer = TrackWriter(
            settings, spool_path=self._spool_path, timezone=self._timezone, mileage=self._mileage, spool=self._spool
        )
        self._task = tg.create_task(self._writer.run(), name="track-writer")
        self._ready.set()

    def start_spooling(self, tg: asyncio.TaskGroup) -> None:
        """A writer that only spools, while the schema is not known to be there."""
        if self._writer is None:
            self._start(tg, make_conninfo(self._settings.dsn, host=NOT_MIGRATED_HOST))

    async def start_writing(self, tg: asyncio.TaskGroup) -> None:
        """The real writer; a spool-only one first hands over its queue through the spool."""
        if self.writing:
            return
        if self._writer is not None:
            self._ready.clear()
            await self._stop()
        self._start(tg, self._settings.dsn)
        self.writing = True
        self._writing.set()

    async def _stop(self) -> None:
        writer, task = self._writer, self._task
        if writer is None or task is None:
            return
        await writer.close()
        await task
        self._past.append(writer.stats)
        self._writer = self._task = None

    async def close(self) -> None:
        """Shutdown: the writer in force writes or spools what it holds."""
        self._ready.set()  # a put waiting for a writer fails instead of hanging
        await self._stop()

    async def replayed(self, timeout_s: float) -> bool:
        """Wait until the spool is replayed (True), at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.spool_backlog_bytes and time.monotonic() < deadline:  # noqa: ASYNC110 - the writer has no event
            await asyncio.sleep(0.05)
        return not self.spool_backlog_bytes

    # -- what the metrics read ------------------------------------------------------

    @property
    def spool_path(self) -> Path:
        return Path(self._spool_path)

    @property
    def stats(self) -> WriterStats:
        """This run's counters, over every writer it had."""
        parts = [*self._past, *([self._writer.stats] if self._writer is not None else [])]
        total = WriterStats()
        for part in parts:
            for f in fields(WriterStats):
                if f.name == "last_batch_s":
                    total.last_batch_s = part.last_batch_s
                elif f.name == "spool_peak_bytes":
                    total.spool_peak_bytes = max(total.spool_peak_bytes, part.spool_peak_bytes)
                else:
                    setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
        return total

    def _get(self, name: str, default: Any) -> Any:
        return default if self._writer is None else getattr(self._writer, name)

    @property
    def queued_rows(self) -> int:
        return cast(int, self._get("queued_rows", 0))

    @property
    def spool_bytes(self) -> int:
        return cast(int, self._get("spool_bytes", 0))

    @property
    def spool_backlog_bytes(self) -> int:
        return cast(int, self._get("spool_backlog_bytes", 0))

    @property
    def spool_max_bytes(self) -> int:
        return int(self._settings.spool_max_mb * 1024 * 1024)

    @property
    def spool_full(self) -> bool:
        return cast(bool, self._get("spool_full", False))

    @property
    def database_available(self) -> bool:
        return self.writing and cast(bool, self._get("database_available", False))

    @property
    def flow_control_active(self) -> bool:
        return cast(bool, self._get("flow_control_active", False))

    @property
    def thread_id(self) -> int | None:
        return cast("int | None", self._get("thread_id", None))


class DatabaseStart:
    """The steps that need the database, run when it answers (see the module docstring)."""

    def __init__(
        self,
        *,
        db: Database,
        settings: DatabaseSettings,
        writers: WriterSwitch,
        engine: Engine,
        ledger: AlertLedger,
        hub: LiveHub,
        directory: VehicleDirectory,
        sync_registry: Callable[[], Awaitable[None]],
        on_schema: Callable[[SchemaInfo], None],
        started_at: float,
        on_restored: Callable[[], None] = settle_memory,
        also_restore: Sequence[Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]] = (),
        restore_all: bool = True,
    ) -> None:
        """``restore_all`` false: a scale-out worker, which restores each vehicle
        when it first sees it (:mod:`gpsd_server.cluster.takeover`)."""
        self.db, self.settings, self.writers = db, settings, writers
        self.engine, self.ledger, self.hub, self.directory = engine, ledger, hub, directory
        self._sync_registry = sync_registry
        self._on_schema = on_schema
        self._also_restore = also_restore  # other components' state from the database (12319 cases)
        self._on_restored = on_restored  # the state that lives as long as the process is in place
        self.started_at = started_at
        self._restore_all = restore_all
        self.intake_open = asyncio.Event()  # the pipeline may process fixes
        self.degraded = False  # started without the database
        self.done = asyncio.Event()  # every step ran
        self.settled = asyncio.Event()  # done, or serving degraded

    async def run(self, tg: asyncio.TaskGroup) -> None:
        backoff = Backoff(self.settings.retry_min_s, self.settings.retry_max_s)
        while True:
            try:
                await self._bring_up(tg)
                break
            except DB_ERRORS as exc:
                if not self.degraded:
                    self.degraded = True
                    log.warning(
                        "database unavailable at start (%s): serving from memory, fixes and alerts spooled to %s; "
                        "migrations, restore and registry sync follow when it answers",
                        first_line(exc), self.writers.spool_path,
                    )  # fmt: skip
                    self.writers.start_spooling(tg)
                    self.intake_open.set()
                    self.settled.set()
                # Retry as soon as the probe sees it back, at the latest after the backoff.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff.next()):
                        await self._available()
        self.done.set()
        self.settled.set()

    async def _available(self) -> None:
        while not self.db.available:
            await self.db.changed.wait()

    async def _bring_up(self, tg: asyncio.TaskGroup) -> None:
        async with await self.db.direct() as conn:
            info = await migrate(conn, chunk_interval=self.settings.chunk_interval)
        self._on_schema(info)
        await self.writers.start_writing(tg)
        if not await self.writers.replayed(REPLAY_WAIT_S):
            log.warning("spool not replayed within %.0f s; restoring from what the database has", REPLAY_WAIT_S)
        async with await self.db.direct() as conn:
            if not self._restore_all:
                ends = []
            elif self.degraded:
                ends = await self._restore_unseen(conn)
            else:
                await restore(conn, engine=self.engine, ledger=self.ledger, hub=self.hub, directory=self.directory)
                ends = []
            for restore_more in self._also_restore:
                await restore_more(conn)
        self.writers.seen = None
        self._on_restored()
        self.db.mark_ready()
        if ends:
            await self.writers.put((), ends)
            self.hub.publish_alerts(view.from_raised(a, self.directory) for a in ends)
        self.intake_open.set()
        if self.degraded:
            log.warning("database back: schema checked, state restored; %d alerts of before ended", len(ends))
        try:
            await self._sync_registry()
        except (psycopg.Error, *DB_ERRORS) as exc:
            log.warning("vehicle registry not synced (%s); synced at the next reload", first_line(exc))

    async def _restore_unseen(self, conn: psycopg.AsyncConnection[Any]) -> list[AlertRow]:
        """Restore after a degraded start: the vehicles that have not reported
        since are restored as at any start; for the others, the alerts they
        had open before the restart are ended (the live state has replaced them)."""
        last = await vehicles.last_positions(conn)
        still_open = [a for a in await alerts.still_open(conn) if a.raised_at.timestamp() < self.started_at]
        # No await from here: the pipeline cannot process a fix in between.
        seen = self.writers.seen or set()
        self.directory.learn(VehicleInfo(r.vehicle_id, r.vehicle_class, r.plate, r.company) for r in last)
        unseen_open = [a for a in still_open if a.vehicle_id not in seen]
        self.ledger.restore((a.vehicle_id, a.key, str(a.id)) for a in unseen_open)
        by_vehicle: dict[str, list[OpenAlert]] = defaultdict(list)
        for a in unseen_open:
            by_vehicle[a.vehicle_id].append(_open_alert(a))
        positions = []
        for r in last:
            if r.vehicle_id in seen:
                continue
            ts = r.ts.timestamp()
            fix = Fix(r.vehicle_id, ts, r.lon, r.lat, speed_kmh=r.speed_kmh, heading=r.heading, alarm=r.alarm)
            self.engine.restore(r.vehicle_id, fix, by_vehicle.pop(r.vehicle_id, ()))
            positions.append(
                LivePosition(r.vehicle_id, ts, r.lon, r.lat, r.speed_kmh, r.heading, r.vehicle_class, r.plate, r.alarm)
            )
        for vehicle_id, open_alerts in by_vehicle.items():
            self.engine.restore(vehicle_id, None, open_alerts)
        self.hub.restore(positions)
        # A vehicle that reported: where its live state has the alert open again, the
        # store kept the old row (one open alert per vehicle and key) and the live
        # alert continues under its id; the others ended meanwhile.
        now = time.time()
        ends = []
        for a in still_open:
            if a.vehicle_id not in seen:
                continue
            if (a.vehicle_id, a.key) in self.writers.live_open:
                self.ledger.restore([(a.vehicle_id, a.key, str(a.id))])
            else:
                ends.append(_superseded(a, self.hub.positions.get(a.vehicle_id), now))
        log.info(
            "restored %d vehicles and %d open alerts; %d vehicles reported during the outage",
            len(positions), len(unseen_open), len(seen),
        )  # fmt: skip
        return ends


def _open_alert(a: AlertRecord) -> OpenAlert:
    return OpenAlert(
        a.key, a.kind, cast(Severity, a.severity), a.ts.timestamp(), a.lon or 0.0, a.lat or 0.0,
        a.zone_id, a.route_id, a.details,
    )  # fmt: skip


def _superseded(a: AlertRecord, now_at: LivePosition | None, now: float) -> AlertRow:
    ts, lon, lat = (now_at.ts, now_at.lon, now_at.lat) if now_at else (a.ts.timestamp(), a.lon or 0.0, a.lat or 0.0)
    event = Event(
        kind=a.kind, phase="end", vehicle_id=a.vehicle_id, ts=max(ts, a.ts.timestamp()), lon=lon, lat=lat,
        key=a.key, severity=cast(Severity, a.severity), zone_id=a.zone_id, route_id=a.route_id,
        details={"restored": True, "after_outage": True},
    )  # fmt: skip
    return AlertRow(str(a.id), event, now)
