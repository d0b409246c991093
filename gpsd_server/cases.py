"""The 12319 case driver: the pure case book (core/cases.py) under the
database, the terminals' command queue, the alert path and the live hub.

Who feeds it:

* the pipeline, every batch: :meth:`CaseDesk.observe` with the batch's fixes
  (only dispatched cars are looked at; a set lookup per fix otherwise), and
  every tick: :meth:`CaseDesk.tick` for deadlines. Both answer with alert
  events that go into the batch's ledger rows, so an overdue step reaches the
  desk like any rule's alert (number, place, ``/ws/live``), and its end in the
  same transaction as the fix that ended it;
* the API, for what operators do (:meth:`create`, :meth:`act`). Each change
  is one transaction (the case row, its sealed audit event, the dispatch and
  the 0x8300 text for the car's terminal), then the book follows and the
  alerts it ends are raised through the pipeline.

Its own task (:meth:`run`) writes what the fixes showed (arrived, left,
returned: the book knows at once, the database a moment later) and follows
the dispatch text's status in the terminal command queue into the trail
(``terminal_sent``, ``terminal_acknowledged``, ...). Every write goes
through one lock, so the trail's order is the order things happened.

After a restart (:meth:`restore`): the open cases and their overdue alerts
still open come back from the database, and each dispatched car's stored
fixes since its dispatch are run through the watch again, so an arrival that
happened while the server was away (or whose write was lost) is found, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import psycopg

from gpsd_server import wire
from gpsd_server.backoff import Backoff
from gpsd_server.cityfolder import CityData
from gpsd_server.core import cases as core
from gpsd_server.core.cases import (
    PRIORITY_LABEL,
    CaseRefused,
    Proposal,
)
from gpsd_server.core.geo import haversine_m
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.places import Location
from gpsd_server.directory import VehicleDirectory
from gpsd_server.model import Event, Fix
from gpsd_server.settings import CaseSettings, DispatchSettings
from gpsd_server.sinks.hub import LivePosition
from gpsd_server.store import cases as store
from gpsd_server.store import commands as commands_store
from gpsd_server.store.db import DB_ERRORS, Database

log = logging.getLogger(__name__)

PATROL = "patrol"
RaiseEvents = Callable[[Sequence[Event], float], Awaitable[None]]


class CityInForce(Protocol):
    @property
    def current(self) -> CityData: ...


class LiveCases(Protocol):
    @property
    def positions(self) -> Mapping[str, LivePosition]: ...
    def publish_cases(self, cases: Sequence[wire.Case]) -> None: ...


def _utc(ts: float) -> datetime:
    return wire.utc(ts)


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def facts(r: store.CaseRecord) -> core.CaseFacts:
    return core.CaseFacts(
        id=r.id, number=r.number, priority=r.priority, category=r.category, lon=r.lon, lat=r.lat,
        state=r.state,  # type: ignore[arg-type]
        accepted_at=r.accepted_at.timestamp(), vehicle_id=r.vehicle_id, zone_id=r.grid_id or r.district_id,
        dispatched_at=_ts(r.dispatched_at), assigned_at=_ts(r.assigned_at), arrived_at=_ts(r.arrived_at),
        handled_at=_ts(r.handled_at), called_back_at=_ts(r.called_back_at),
        ended_at=_ts(r.closed_at or r.cancelled_at),
    )  # fmt: skip


def _done(f: core.CaseFacts, step: str) -> float | None:
    return {"dispatch": f.dispatched_at, "arrive": f.arrived_at, "handle": f.handled_at,
            "callback": f.called_back_at}.get(step)  # fmt: skip


def terminal_text(r: store.CaseRecord, settings: CaseSettings, category: str) -> str:
    """What the patrol car's screen shows (and reads out) for the case."""
    where = r.place or f"{r.lat:.5f},{r.lon:.5f}"
    if r.address:
        where = f"{r.address}（{where}）"
    limit = settings.deadline_s(r.priority, "arrive")
    due = f"｜请于{math.ceil(limit / 60)}分钟内到场" if limit > 0 else ""
    text = (r.description or "").strip().replace("\n", " ")[:120]
    return (
        f"【12319案件{r.number}】{PRIORITY_LABEL.get(r.priority, r.priority)}·{category}｜地点：{where}"
        f"{'｜' + text if text else ''}{due}"
    )


class CaseDesk:
    @staticmethod
    def event_view(e: store.EventRecord) -> wire.CaseEvent:
        """A trail entry as the API and the hub show it."""
        return event_view(e)

    def __init__(
        self,
        *,
        db: Database,
        settings: CaseSettings,
        dispatch: DispatchSettings,
        timezone: str,
        moving_kmh: float,
        city: CityInForce,
        live: LiveCases,
        directory: VehicleDirectory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db, self.settings, self.dispatch_settings = db, settings, dispatch
        self.timezone = timezone
        self.book = core.CaseBook(settings, moving_kmh=moving_kmh)
        self.city, self.live, self.directory = city, live, directory
        self.clock = clock
        self.raise_events: RaiseEvents | None = None  # the pipeline's, set by the wiring
        self.wake_commands: Callable[[], None] | None = None  # the terminal command driver's
        self.counters: Counter[str] = Counter()
        self._findings: deque[core.GpsFinding] = deque()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._failing = False

    # -- what the pipeline asks (synchronous, in the batch cycle) -----------------------------

    def observe(self, fixes: Sequence[Fix], now: float) -> list[Event]:
        findings, events = self.book.observe(fixes)
        if findings:
            self._findings.extend(findings)
            self.counters.update(f"gps_{f.kind}" for f in findings)
            self._wake.set()
        return events

    def tick(self, now: float) -> list[Event]:
        events = self.book.tick(now)
        if events:
            self.counters["overdue_raised"] += len(events)
        return events

    # -- restore ----------------------------------------------------------------------------

    async def restore(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Open cases and their open overdue alerts back into the book; the
        dispatched cars' stored fixes through the watch again."""
        records = await store.still_open(conn)
        alerts: dict[int, dict[str, str]] = {}
        for case_id, step, vehicle_id, _ in await store.overdue_alerts(conn, open_only=True):
            alerts.setdefault(case_id, {})[step] = vehicle_id
        events: list[Event] = []
        since: dict[str, datetime] = {}  # car -> from when its fixes count for its open cases
        for r in records:
            f = facts(r)
            events += self.book.restore(f, alerts.get(r.id, {}))
            start = r.arrived_at if f.state == "arrived" else r.assigned_at or r.dispatched_at
            if f.state in ("dispatched", "arrived") and f.vehicle_id and start is not None:
                since[f.vehicle_id] = min(start, since.get(f.vehicle_id, start))
        replayed = 0
        for vehicle_id, start in sorted(since.items()):
            rows = await store.track_since(conn, vehicle_id, start)
            replay = [Fix(vehicle_id, ts, lon, lat, speed_kmh=v, flags=flags) for ts, lon, lat, v, flags in rows]
            replayed += len(replay)
            found, ended = self.book.observe(replay)
            self._findings.extend(found)
            events += ended
        if events and self.raise_events is not None:
            await self.raise_events(events, self.clock())
        log.info(
            "restored %d open 12319 cases (%d overdue alerts open, %d fixes replayed for arrival)",
            len(records), sum(len(a) for a in alerts.values()), replayed,
        )  # fmt: skip

    # -- reading --------------------------------------------------------------------------

    def category_name(self, category: str) -> str:
        return self.settings.categories.get(category, category)

    def view(self, r: store.CaseRecord, now: float, event: store.EventRecord | None = None) -> wire.Case:
        f = facts(r)
        steps = []
        late = False
        ended = f.ended_at if f.state in core.FINAL_STATES else None
        for step in core.STEPS:
            started = f.step_started(step)
            limit = self.book.deadline_s(f, step)
            due = started + limit if started is not None and limit > 0 else None
            done = _done(f, step)
            overdue = due is not None and started is not None and (done or ended or now) > due
            if step == f.pending and overdue:
                late = True
            steps.append(
                wire.CaseStep(
                    step=step, limit_s=limit or None, started_at=None if started is None else _utc(started),
                    due_at=None if due is None else _utc(due), done_at=None if done is None else _utc(done),
                    took_s=None if started is None or done is None else round(done - started, 3), overdue=overdue,
                )
            )  # fmt: skip
        command = None if r.command_id is None else {"id": r.command_id, "status": r.command_status}
        plate = self.directory.info(r.vehicle_id).plate if r.vehicle_id else None
        return wire.Case(
            id=r.id, number=r.number, channel=r.channel, category=r.category,
            category_name=self.category_name(r.category), priority=r.priority, description=r.description,
            address=r.address, reporter=r.reporter, lon=r.lon, lat=r.lat, place=r.place, district_id=r.district_id,
            district=r.district, grid_id=r.grid_id, grid=r.grid, state=r.state, vehicle_id=r.vehicle_id, plate=plate,
            accepted_at=r.accepted_at, accepted_by=r.accepted_by, dispatched_at=r.dispatched_at,
            assigned_at=r.assigned_at, arrived_at=r.arrived_at, arrival_source=r.arrival_source,
            arrival_distance_m=r.arrival_distance_m, on_site=r.on_site, handled_at=r.handled_at,
            called_back_at=r.called_back_at, closed_at=r.closed_at, cancelled_at=r.cancelled_at, command=command,
            steps=steps, late=late, actions=sorted({a for (s, a) in core.TRANSITIONS if s == r.state}),
            events=r.events, updated_at=r.updated_at, event=None if event is None else event_view(event),
        )  # fmt: skip

    def propose(self, lon: float, lat: float, *, limit: int, now: float, paths: int = 3) -> list[Proposal]:
        """Online patrol cars by ETA to the place: along the city's roads
        where it has a road layer, else straight line at city speed."""
        d = self.dispatch_settings
        cars = [
            p for p in self.live.positions.values()
            if p.vehicle_class == PATROL and now - p.ts <= d.online_max_age_s
        ]  # fmt: skip
        if not cars:
            return []
        network = self.city.current.roads
        distances = [haversine_m(lon, lat, p.lon, p.lat) for p in cars]
        # The nearest in a straight line first: they get their road path drawn.
        order = sorted(range(len(cars)), key=lambda i: distances[i])
        cars, distances = [cars[i] for i in order], [distances[i] for i in order]
        positions = [(p.lon, p.lat) for p in cars]
        legs = None
        if network is not None and not network.empty:
            legs = network.legs(
                (lon, lat), positions, road_speed_kmh=d.road_speed_kmh, city_speed_kmh=d.city_speed_kmh,
                road_factor=d.road_factor, snap_max_m=d.road_snap_max_m, paths=max(paths, limit),
            )  # fmt: skip
        out = []
        for i, p in enumerate(cars):
            leg = legs[i] if legs is not None else None
            if leg is not None and math.isfinite(leg.route_m) and math.isfinite(leg.eta_s):
                method, eta_s, route_m, path = leg.method, leg.eta_s, leg.route_m, leg.path
            else:  # no road layer, or a place the city's projection cannot reach (far outside the city)
                route_m = distances[i] * d.road_factor
                method, eta_s, path = "straight", route_m / (d.city_speed_kmh / 3.6), ()
            busy = tuple(c.number for c in self.book.cases_of(p.vehicle_id))
            out.append(
                Proposal(
                    p.vehicle_id,
                    p.plate,
                    p.lon,
                    p.lat,
                    round(now - p.ts),
                    round(distances[i]),
                    round(route_m),
                    round(eta_s / 60, 1),
                    method,
                    busy,
                    path,
                )
            )
        out.sort(key=lambda c: (bool(c.busy), c.eta_min, c.distance_m))
        return out[:limit]

    async def report(self, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
        async with self.db.connection() as conn:
            return await store.report(conn, start, end)

    # -- what operators do ------------------------------------------------------------------

    async def create(
        self, *, channel: str, category: str, priority: str, description: str, address: str, reporter: str,
        lon: float, lat: float, by: str,
    ) -> wire.Case:  # fmt: skip
        if category not in self.settings.categories:
            raise CaseRefused("category", f"unknown category {category[:40]!r}", status=400)
        data = self.city.current
        place = data.places.describe(lon, lat) if data.places is not None else None
        where = data.places.locate(lon, lat) if data.places is not None else Location()
        now = self.clock()
        new = store.NewCase(
            channel=channel, category=category, priority=priority, description=description, address=address,
            reporter=reporter, lon=lon, lat=lat, place=place, district_id=where.district_id, district=where.district,
            grid_id=where.grid_id, grid=where.grid,
        )  # fmt: skip
        async with self._lock:
            async with self.db.connection() as conn:
                record = await store.create(conn, new, by=by, at=_utc(now), timezone=self.timezone)
                trail = await store.events(conn, record.id)
            await self._follow(record, trail[-1], now)
        self.counters["created"] += 1
        return self.view(record, now)

    async def act(
        self, case_id: int, action: str, *, by: str, comment: str = "", vehicle_id: str | None = None,
        phone: str | None = None,
    ) -> wire.Case:  # fmt: skip
        """An operator's action on a case (``core.TRANSITIONS``); ``dispatch``
        needs the patrol car (and its terminal's phone, if it has one)."""
        expect = [s for (s, a) in core.TRANSITIONS if a == action]
        if not expect:
            raise CaseRefused("action", f"unknown action {action!r}", status=400)
        async with self._lock:
            await self._write_findings()  # what the fixes showed comes first
            now = self.clock()
            at = _utc(now)
            async with self.db.connection() as conn:
                current = await store.get(conn, case_id)
                if current is None:
                    raise CaseRefused("case_id", "no such case", status=404)
                if current.state not in expect:
                    raise CaseRefused("state", f"{action} is not allowed when the case is {current.state}")
                kind = core.EVENT_OF_ACTION[action]
                data: dict[str, Any] = {}
                columns: dict[str, Any] = {}
                try:
                    if action == "dispatch":
                        assert vehicle_id is not None
                        kind, data, columns = await self._dispatching(
                            conn, current, vehicle_id, phone, by, comment, now
                        )
                        record = await store.change(
                            conn, case_id, store.NewEvent(kind, at, by, comment, data), expect=expect,
                            columns=columns, now=at,
                        )  # fmt: skip
                    else:
                        columns = self._columns(action, current, at)
                        record = await store.change(
                            conn, case_id, store.NewEvent(kind, at, by, comment, data), expect=expect,
                            columns=columns, now=at,
                        )  # fmt: skip
                except store.Refused as exc:
                    raise CaseRefused("state", f"{action} is not allowed when the case is {exc.state}") from None
                trail = await store.events(conn, case_id)
            await self._follow(record, trail[-1], now)
        self.counters[f"action_{action}"] += 1
        if action == "dispatch" and record.command_id is not None and self.wake_commands is not None:
            self.wake_commands()
        return self.view(record, now, trail[-1])

    def _columns(self, action: str, current: store.CaseRecord, at: datetime) -> dict[str, Any]:
        if action == "arrive":
            return {"state": "arrived", "arrived_at": at, "arrival_source": "manual", "on_site": True}
        if action == "handle":
            return {"state": "handled", "handled_at": at}
        if action == "callback":
            return {"state": "called_back", "called_back_at": at}
        if action == "close":
            return {"state": "closed", "closed_at": at}
        if action == "cancel":
            return {"state": "cancelled", "cancelled_at": at}
        return {}  # note

    async def _dispatching(
        self, conn: psycopg.AsyncConnection[Any], current: store.CaseRecord, vehicle_id: str, phone: str | None,
        by: str, comment: str, now: float,
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:  # fmt: skip
        """The dispatch row, the 0x8300 to the car's terminal, and what the case records."""
        pos = self.live.positions.get(vehicle_id)
        if pos is None or pos.vehicle_class != PATROL:
            raise CaseRefused("vehicle_id", f"{vehicle_id!r} is not a known patrol vehicle", status=404)
        offer = next((p for p in self.propose(current.lon, current.lat, limit=10_000, now=now, paths=0)
                      if p.id == vehicle_id), None)  # fmt: skip
        distance = haversine_m(current.lon, current.lat, pos.lon, pos.lat)
        dispatch_id = await store.record_dispatch(
            conn, case_id=current.id, lon=current.lon, lat=current.lat, vehicle_id=vehicle_id, distance_m=distance,
            note=f"12319案件{current.number} {comment}".strip(), by=by,
        )  # fmt: skip
        command_id = None
        if phone is not None:
            text = dl.TextMessage(terminal_text(current, self.settings, self.category_name(current.category)))
            command = await commands_store.enqueue(
                conn, vehicle_id=vehicle_id, phone=phone, kind="text", msg_id=text.msg_id, body=text.to_json(2019),
                created_by=by, dispatch_id=dispatch_id,
            )  # fmt: skip
            command_id = command.id
        at = _utc(now)
        data = {
            "vehicle_id": vehicle_id, "plate": pos.plate, "distance_m": round(distance), "dispatch_id": dispatch_id,
            "command_id": command_id, "terminal": phone is not None,
            "eta_min": offer.eta_min if offer else None, "method": offer.method if offer else None,
            "route_m": offer.route_m if offer else None, "previous_vehicle_id": current.vehicle_id,
        }  # fmt: skip
        columns: dict[str, Any] = {
            "state": "dispatched", "vehicle_id": vehicle_id, "assigned_at": at, "dispatch_id": dispatch_id,
            "command_id": command_id, "command_status": "queued" if command_id is not None else None,
            "on_site": None,
        }  # fmt: skip
        if current.dispatched_at is None:
            columns["dispatched_at"] = at
        return ("reassigned" if current.state == "dispatched" else "dispatched"), data, columns

    async def _follow(self, record: store.CaseRecord, event: store.EventRecord, now: float) -> None:
        """After a write: the book follows the database, its alerts are
        raised, the page hears of it."""
        events = self.book.put(facts(record))
        if events and self.raise_events is not None:
            await self.raise_events(events, now)
        self.live.publish_cases([self.view(record, now, event)])

    # -- the driver's own task ----------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.settings.sync_s, 30.0)
        await self.db.wait_ready()
        while True:
            try:
                await self.sync()
                backoff.reset()
                wait = self.settings.sync_s
                if self._failing:
                    log.info("12319 cases: database back")
                    self._failing = False
            except (psycopg.Error, *DB_ERRORS) as exc:
                wait = backoff.next()
                self.counters["database_errors"] += 1
                if not self._failing:
                    log.warning("12319 cases: database unavailable (%s); retrying", str(exc).strip()[:200])
                    self._failing = True
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def sync(self) -> None:
        """Write what the fixes showed; follow the dispatch texts' status."""
        async with self._lock:
            await self._write_findings()
            await self._follow_commands()

    async def _write_findings(self) -> None:
        while self._findings:
            finding = self._findings[0]
            async with self.db.connection() as conn:
                written = await self._write_finding(conn, finding)
            self._findings.popleft()
            self.counters["gps_written" if written else "gps_skipped"] += 1

    async def _write_finding(self, conn: psycopg.AsyncConnection[Any], g: core.GpsFinding) -> bool:
        current = await store.get(conn, g.case_id)
        if current is None or current.vehicle_id != g.vehicle_id:
            return False  # another car is on the case now
        at = _utc(g.ts)
        after = None if current.assigned_at is None else round(g.ts - current.assigned_at.timestamp(), 3)
        data = {"vehicle_id": g.vehicle_id, "distance_m": g.distance_m, "lon": g.lon, "lat": g.lat, "after_s": after}
        event = store.NewEvent(g.kind, at, core.GPS, "", data)
        if await store.gps_once(conn, g.case_id, event):
            return False
        if g.kind == "arrived":
            expect, columns = ("dispatched",), {
                "state": "arrived", "arrived_at": at, "arrival_source": "gps", "arrival_distance_m": g.distance_m,
                "on_site": True,
            }  # fmt: skip
        else:
            expect, columns = ("arrived",), {"on_site": g.kind == "returned"}
        now = self.clock()
        try:
            record = await store.change(conn, g.case_id, event, expect=expect, columns=columns, now=_utc(now))
        except store.Refused:
            fresh = await store.get(conn, g.case_id)
            if fresh is not None:
                events = self.book.put(facts(fresh))  # the book follows the database
                if events and self.raise_events is not None:
                    await self.raise_events(events, now)
            return False
        trail = await store.events(conn, g.case_id)
        await self._follow(record, trail[-1], now)
        return True

    async def _follow_commands(self) -> None:
        async with self.db.connection() as conn:
            changes = await store.command_changes(conn)
            for c in changes:
                at = c["acked_at"] if c["status"] == "acknowledged" else c["sent_at"] if c["status"] == "sent" else None
                data = {
                    "command_id": c["command_id"], "status": c["status"], "vehicle_id": c["vehicle_id"],
                    "transport": c["transport"], "attempts": c["attempts"], "result": c["result"], "error": c["error"],
                }  # fmt: skip
                event = store.NewEvent(f"terminal_{c['status']}", at or c["updated_at"], "terminal", "", data)
                now = self.clock()
                try:
                    record = await store.change(
                        conn, c["case_id"], event, expect=core.OPEN_STATES, columns={"command_status": c["status"]},
                        now=_utc(now),
                    )  # fmt: skip
                except store.Refused:
                    continue  # closed meanwhile: the trail ends there
                trail = await store.events(conn, c["case_id"])
                self.counters[f"terminal_{c['status']}"] += 1
                await self._follow(record, trail[-1], now)


def event_view(e: store.EventRecord) -> wire.CaseEvent:
    return wire.CaseEvent(
        seq=e.seq, kind=e.kind, at=e.at, recorded_at=e.recorded_at, by=e.by_name, comment=e.comment, data=e.data
    )
