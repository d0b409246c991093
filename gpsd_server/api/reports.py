"""Supervisor reports, JSON, ``format=csv`` or ``format=xlsx``: daily mileage,
violations, muck-truck permit compliance, patrol coverage per grid, the 12319
dispatch log. Days are the city's local days (``[city] timezone``); CSV and
XLSX have Chinese headers and values and local times (``api/sheets.py``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from gpsd_server.api import sheets
from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.history_params import history_range, local_day
from gpsd_server.api.params import day_query, format_query, time_query
from gpsd_server.api.responses import json_response, text_content
from gpsd_server.core import history as core
from gpsd_server.core.history_city import check_trip
from gpsd_server.store import dispatch as dispatch_store
from gpsd_server.store import history as store
from gpsd_server.store.vehicles import vehicles_of_class
from gpsd_server.wire import ts_text, utc

FORMATS = ("json", "csv", "xlsx")
SHEETS = text_content("text/csv", sheets.XLSX_TYPE)  # the 200's other media types
TITLES = {"mileage": "里程统计", "violations": "违规统计", "permits": "许可合规", "patrol-coverage": "网格巡查",
          "patrol-mileage": "巡查里程", "dispatches": "12319派单记录"}  # fmt: skip


def _iso(ts: float | None) -> str | None:
    return None if ts is None else ts_text(utc(ts))


def _answer(fmt: str, body: dict[str, Any], header: tuple[str, ...], rows: list[tuple[Any, ...]], name: str) -> Any:
    timezone = str(body["timezone"])
    if fmt == "csv":
        return Response(
            sheets.to_csv(header, rows, timezone),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if fmt == "xlsx":
        title = TITLES.get(name.split("-2")[0], name)
        return Response(
            sheets.to_xlsx(header, rows, timezone, title=title),
            media_type=sheets.XLSX_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return json_response(body)


def day_bounds(t0: datetime, t1: datetime, timezone: str) -> list[tuple[str, float, float]]:
    """Local days overlapping [t0, t1) as (date, start, end) epoch bounds clipped to the range."""
    tz = ZoneInfo(timezone)
    day = t0.astimezone(tz).date()
    out: list[tuple[str, float, float]] = []
    while True:
        a = datetime.combine(day, time(), tz).timestamp()
        if a >= t1.timestamp():
            return out
        b = datetime.combine(day + timedelta(days=1), time(), tz).timestamp()
        out.append((day.isoformat(), max(a, t0.timestamp()), min(b, t1.timestamp())))
        day += timedelta(days=1)


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(prefix="/api/reports", tags=["reports"])
    settings = services.config.history
    rules = services.config.rules
    moving_kmh = rules.moving_kmh
    tzname = services.config.city.timezone
    db = services.db
    viewer = require("viewer", company="own")  # a company account: its own vehicles' figures

    @r.get("/mileage", responses=SHEETS)
    async def mileage(
        day: str | None = day_query(),
        format: str = format_query(*FORMATS),
        by: Literal["vehicle", "company"] = Query("vehicle", description="CSV rows: vehicle | company"),
        who: Principal = Depends(viewer),
    ) -> Any:
        """Kilometres and driving time per vehicle and per company for one local day."""
        fmt = format.lower()
        d, t0, t1 = local_day(day, tzname)
        gap_s, scope = settings.gap_s, who.scope
        async with db.connection() as conn:
            rows = await store.daily_mileage_from_hours(conn, t0, t1, moving_kmh=moving_kmh, gap_s=gap_s, scope=scope)
            if rows is None:
                rows = await store.daily_mileage(conn, t0, t1, moving_kmh=moving_kmh, gap_s=gap_s, scope=scope)
        vehicles: list[dict[str, Any]] = [
            {"id": v, "plate": plate, "class": cls, "company": company, "distance_km": round(km, 3),
             "driving_s": round(drv, 1), "max_speed_kmh": round(top, 1), "fixes": n}
            for v, plate, cls, company, km, drv, top, n in rows
        ]  # fmt: skip
        companies: dict[str, dict[str, Any]] = {}
        for v in vehicles:
            c = companies.setdefault(v["company"] or "", {"company": v["company"], "vehicles": 0, "distance_km": 0.0,
                                                            "driving_s": 0.0})  # fmt: skip
            c["vehicles"] += 1
            c["distance_km"] = round(c["distance_km"] + v["distance_km"], 3)
            c["driving_s"] = round(c["driving_s"] + v["driving_s"], 1)
        body = {"day": d.isoformat(), "timezone": tzname, "vehicles": vehicles, "companies": list(companies.values())}
        if by == "company":
            header: tuple[str, ...] = ("company", "vehicles", "distance_km", "driving_s")
            table = [tuple(c.values()) for c in companies.values()]
        else:
            header = ("id", "plate", "class", "company", "distance_km", "driving_s", "max_speed_kmh", "fixes")
            table = [tuple(v.values()) for v in vehicles]
        return _answer(fmt, body, header, table, f"mileage-{d}")

    @r.get("/violations", responses=SHEETS)
    async def violation_counts(
        start: str | None = time_query(),
        end: str | None = time_query(),
        format: str = format_query(*FORMATS),
        who: Principal = Depends(viewer),
    ) -> Any:
        """Warning and critical alerts counted per vehicle, company, kind and local day."""
        fmt = format.lower()
        t0, t1 = history_range(start, end, settings.max_range_days)
        async with db.connection() as conn:
            rows = await store.violations(conn, t0, t1, tzname, scope=who.scope)
        totals: dict[str, defaultdict[str, int]] = {k: defaultdict(int) for k in ("vehicle", "company", "kind", "day")}
        for vehicle, _plate, company, kind, day, n in rows:
            for key, value in (("vehicle", vehicle), ("company", company or ""), ("kind", kind), ("day", day)):
                totals[key][value] += n
        body = {
            "start": t0, "end": t1, "timezone": tzname,
            "rows": [{"vehicle_id": v, "plate": p, "company": c, "kind": k, "day": d, "count": n}
                     for v, p, c, k, d, n in rows],
            **{f"by_{k}": dict(sorted(t.items())) for k, t in totals.items()},
        }  # fmt: skip
        return _answer(fmt, body, ("vehicle_id", "plate", "company", "kind", "day", "count"), rows, "violations")

    @r.get("/permits", responses=SHEETS)
    async def permits(
        day: str | None = day_query(),
        format: str = format_query(*FORMATS),
        who: Principal = Depends(viewer),
    ) -> Any:
        """Per trip of every muck truck with a permit valid that day: share of the
        trip on a permitted route (or in its sites), share inside the permit's
        hours, origin and destination reached."""
        fmt = format.lower()
        d, t0, t1 = local_day(day, tzname)
        shapes = services.city.shapes()
        ordinal = d.toordinal()
        permitted = {
            v.id: [p for p in v.permits if p.valid_on(ordinal)]
            for v in (services.city.current.city.vehicles or {}).values()
            if v.vehicle_class == "muck_truck" and who.sees(v.id)
        }
        permitted = {k: v for k, v in permitted.items() if v}
        async with db.connection() as conn:
            tracks = await store.fetch_tracks(conn, sorted(permitted), t0, t1)
        out = []
        for vehicle_id, t in sorted(tracks.items()):
            x, y = shapes.projection.to_xy(t.lon, t.lat)
            stops = core.find_stops(
                t.ts, x, y, t.lon, t.lat, radius_m=settings.stop_radius_m, min_s=settings.stop_min_s
            )
            trips = core.find_trips(t.ts, t.lon, t.lat, t.speed, stops, moving_kmh=moving_kmh, gap_s=settings.gap_s)
            vehicle = shapes.city.vehicle(vehicle_id)
            for trip in trips:
                check = check_trip(
                    shapes, permitted[vehicle_id], trip, t.ts, t.lon, t.lat, tz=ZoneInfo(tzname), settings=rules
                )
                if check is None:
                    continue
                out.append(
                    (vehicle_id, vehicle.plate if vehicle else None, vehicle.company if vehicle else None,
                     _iso(trip.start_ts), _iso(trip.end_ts), round(trip.stats.distance_km, 3), check.permit_id,
                     check.on_route_pct, check.inside_hours_pct, check.origin_reached, check.destination_reached,
                     check.compliant)
                )  # fmt: skip
        header = (
            "vehicle_id", "plate", "company", "start", "end", "distance_km", "permit_id", "on_route_pct",
            "inside_hours_pct", "origin_reached", "destination_reached", "compliant",
        )  # fmt: skip
        body = {
            "day": d.isoformat(), "timezone": tzname, "trips": [dict(zip(header, row, strict=True)) for row in out],
            "vehicles_with_permits": len(permitted),
        }  # fmt: skip
        return _answer(fmt, body, header, out, f"permits-{d}")

    @r.get("/patrol-coverage", responses=SHEETS)
    async def patrol_coverage(
        start: str | None = time_query(),
        end: str | None = time_query(),
        format: str = format_query(*FORMATS),
        by: Literal["grid", "vehicle"] = Query("grid", description="CSV rows: grid | vehicle (daily patrol mileage)"),
        who: Principal = Depends(viewer),
    ) -> Any:
        """Per grid: visited by a patrol vehicle or not, first and last visit, time
        inside (vehicle-seconds); and each patrol car's mileage per local day."""
        fmt = format.lower()
        t0, t1 = history_range(start, end, settings.max_range_days)
        shapes = services.city.shapes()
        patrol = sorted(
            v.id for v in (services.city.current.city.vehicles or {}).values() if v.vehicle_class == "patrol"
        )
        async with db.connection() as conn:
            patrol = sorted(set(patrol) | set(await vehicles_of_class(conn, "patrol")))
            patrol = [v for v in patrol if who.sees(v)]  # a company account: the grids its own cars covered
            tracks = await store.fetch_tracks(conn, patrol, t0, t1) if patrol else {}
        visits = core.zone_visits(
            [g.geometry for g in shapes.grids], [(v, t.ts, t.lon, t.lat) for v, t in tracks.items()],
            gap_s=settings.gap_s,
        )  # fmt: skip
        grids = [
            (g.id, g.name, v.fixes > 0, _iso(v.first_ts), _iso(v.last_ts), round(v.inside_s, 1), len(v.vehicles))
            for g, v in zip(shapes.grids, visits, strict=True)
        ]
        days = day_bounds(t0, t1, tzname)
        daily = []
        for vehicle_id, t in sorted(tracks.items()):
            cuts = np.searchsorted(t.ts, [lo for _, lo, _ in days] + [days[-1][2]])
            for (day, _lo, _hi), a, b in zip(days, cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
                part = slice(a, b)
                s = core.track_stats(
                    t.ts[part], t.lon[part], t.lat[part], t.speed[part],
                    moving_kmh=moving_kmh, gap_s=settings.gap_s,
                )  # fmt: skip
                daily.append((vehicle_id, day, round(s.distance_km, 3), round(s.driving_s, 1)))
        grid_header = ("id", "name", "visited", "first_visit", "last_visit", "inside_s", "vehicles")
        body = {
            "start": t0, "end": t1, "timezone": tzname,
            "grids": [dict(zip(grid_header, g, strict=True)) for g in grids],
            "unvisited": [g[0] for g in grids if not g[2]],
            "patrol_mileage": [{"vehicle_id": v, "day": d, "distance_km": km, "driving_s": s} for v, d, km, s in daily],
        }  # fmt: skip
        if by == "vehicle":
            return _answer(fmt, body, ("vehicle_id", "day", "distance_km", "driving_s"), daily, "patrol-mileage")
        return _answer(fmt, body, grid_header, grids, "patrol-coverage")

    @r.get("/dispatches", dependencies=[Depends(require("viewer"))], responses=SHEETS)
    async def dispatch_log(
        start: str | None = time_query(),
        end: str | None = time_query(),
        format: str = format_query(*FORMATS),
    ) -> Any:
        """The 12319 dispatch log: every case sent to a patrol car in [start, end), oldest first."""
        fmt = format.lower()
        t0, t1 = history_range(start, end, settings.max_range_days)
        async with db.connection() as conn:
            found = await dispatch_store.between(conn, t0, t1)
        header = ("id", "created_at", "created_by", "vehicle_id", "plate", "lon", "lat", "distance_m", "note")
        plate = services.directory.info
        rows = [
            (d.id, _iso(d.created_at.timestamp()), d.created_by, d.vehicle_id, plate(d.vehicle_id).plate,
             d.lon, d.lat, None if d.distance_m is None else round(d.distance_m, 1), d.note)
            for d in found
        ]  # fmt: skip
        listed = [dict(zip(header, row, strict=True)) for row in rows]
        body = {"start": t0, "end": t1, "timezone": tzname, "dispatches": listed}
        return _answer(fmt, body, header, rows, "dispatches")

    return r


__all__ = ["day_bounds", "router"]
