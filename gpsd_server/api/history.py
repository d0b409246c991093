"""History routes: a vehicle's track (GeoJSON, GPX, CSV; simplified or
bucketed), its trips and stops, who is or was inside a zone.

Tracks stream from a server-side cursor on a pool connection of their own:
a month of one vehicle passes through in pages, and ingest (which writes on
the writer's connection) never waits for a reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse

from gpsd_server import wire
from gpsd_server.api import exports
from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.history_params import BUCKET_PATTERN, TRACK_FORMATS, history_range, parse_bucket, parse_positive
from gpsd_server.api.params import NO_NUL, BadParameter, format_query, time_query
from gpsd_server.api.responses import GeoJSONResponse, json_response, text_content
from gpsd_server.core import history as core
from gpsd_server.core.geo import FloatArray, IntArray
from gpsd_server.store import history as store
from gpsd_server.store.vehicles import vehicle_exists

VEHICLE_ID = Path(..., pattern=NO_NUL, description="the vehicle's id")
VIEWER = require("viewer", company="own")


async def own_vehicle(vehicle_id: str = VEHICLE_ID, who: Principal = Depends(VIEWER)) -> str:
    """The path's vehicle, if the caller may see it (a company account: one of its own; else 404)."""
    who.check_vehicle(vehicle_id)
    return vehicle_id


def _nan_none(v: float) -> float | None:
    return None if v != v else v


def track_rows(track: store.Track, keep: Any) -> list[store.TrackRow]:
    """Rows of chosen fixes of an in-memory track (usable fixes: flags 0)."""
    return [
        (datetime.fromtimestamp(t, UTC), lon, lat, _nan_none(s), _nan_none(h), _nan_none(a), 0)
        for t, lon, lat, s, h, a in zip(
            track.ts[keep].tolist(),
            track.lon[keep].tolist(),
            track.lat[keep].tolist(),
            track.speed[keep].tolist(),
            track.heading[keep].tolist(),
            track.alt[keep].tolist(),
            strict=True,
        )
    ]


def first_per_bucket(ts: FloatArray, bucket_s: float) -> IntArray:
    """Index of the first fix in each time bucket (the SQL ``time_bucket`` overview, in numpy)."""
    _, first = np.unique(np.floor(ts / bucket_s), return_index=True)
    return first.astype(np.intp)


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["history"])
    settings = services.config.history
    moving_kmh = services.config.rules.moving_kmh
    db = services.db

    async def require_vehicle(vehicle_id: str) -> None:
        async with db.connection() as conn:
            if not await vehicle_exists(conn, vehicle_id):
                raise BadParameter("vehicle_id", f"unknown vehicle {vehicle_id!r}", status=404)

    async def simplified(
        vehicle_id: str, t0: datetime, t1: datetime, tolerance: float | None, bucket: timedelta | None
    ) -> list[store.TrackRow]:
        """Simplification needs every point of the range at once: capped, in arrays."""
        async with db.connection() as conn:
            n = await store.count_fixes(conn, vehicle_id, t0, t1)
            if n > settings.simplify_max_points:
                raise BadParameter(
                    "simplify_m", f"{n} fixes in range, more than {settings.simplify_max_points}: add bucket or narrow"
                )
            track = (await store.fetch_tracks(conn, [vehicle_id], t0, t1)).get(vehicle_id)
        if track is None:
            return []
        keep = np.arange(len(track), dtype=np.intp)
        if bucket is not None:
            keep = first_per_bucket(track.ts, bucket.total_seconds())
        if tolerance is not None:
            x, y = services.city.shapes().projection.to_xy(track.lon[keep], track.lat[keep])
            keep = keep[core.simplify_indices(x, y, tolerance)]
        return track_rows(track, keep)

    @r.get(
        "/api/vehicles/{vehicle_id}/track",
        dependencies=[Depends(VIEWER)],
        response_class=GeoJSONResponse,
        responses=text_content("application/gpx+xml", "text/csv", geojson=True),
    )
    async def track(
        vehicle_id: str = Depends(own_vehicle),
        start: str | None = time_query("RFC 3339 or epoch seconds; default end - 24 h"),
        end: str | None = time_query("RFC 3339 or epoch seconds; default now"),
        format: str = format_query("geojson", "gpx", "csv"),
        simplify_m: float | None = Query(None, gt=0, le=1000, description="Douglas–Peucker tolerance in metres"),
        bucket: str | None = Query(
            None, pattern=BUCKET_PATTERN, description="first fix per interval, 1 s to 1 day: 30s, 1 min, 1 hour"
        ),
    ) -> Response:
        """A vehicle's track in [start, end), streamed. GeoJSON: a LineString of
        the usable fixes (late ones included, outliers and drift not), then a
        Point per fix with ts, speed, heading, flags (1 late, 2 backfill, 4
        invalid, 8 jump, 16 filtered, 32 drift) and late. GPX 1.1: the line's
        fixes, speed/heading/flags in extensions. CSV: every fix.
        Simplified or bucketed tracks hold usable fixes only."""
        fmt = format.lower()
        tolerance, step = simplify_m, parse_bucket(bucket)
        t0, t1 = history_range(start, end, settings.max_range_days)
        await require_vehicle(vehicle_id)
        rows = await simplified(vehicle_id, t0, t1, tolerance, step) if tolerance is not None else None

        async def pages(line_only: bool) -> AsyncIterator[list[store.TrackRow]]:
            if rows is not None:
                yield rows
                return
            async with db.connection() as conn:
                async for page in store.stream_track(
                    conn, vehicle_id, t0, t1, bucket=step, timescaledb=services.status.timescaledb, line_only=line_only
                ):
                    yield page

        props = {
            "vehicle_id": vehicle_id, "start": t0, "end": t1,
            "simplify_m": tolerance, "bucket_s": step.total_seconds() if step else None,
        }  # fmt: skip
        body: AsyncIterator[bytes]
        if fmt == "geojson":
            body = exports.geojson(pages, props)
        elif fmt == "gpx":
            body = exports.gpx(pages, vehicle_id, f"{t0.isoformat()} / {t1.isoformat()}")
        else:
            body = exports.csv_rows(pages, vehicle_id)
        headers = {}
        if fmt != "geojson":
            stamp = t0.strftime("%Y%m%dT%H%M%SZ")
            headers["Content-Disposition"] = f'attachment; filename="{vehicle_id}-{stamp}.{fmt}"'
        return StreamingResponse(body, media_type=TRACK_FORMATS[fmt], headers=headers)

    async def stops_and_trips(
        vehicle_id: str, start: str | None, end: str | None, radius_m: float | None, min_s: float | None
    ) -> tuple[list[core.Stop], list[core.Trip], store.Track | None]:
        radius = parse_positive("radius_m", radius_m, settings.stop_radius_m, 5000)
        minimum = parse_positive("min_s", min_s, settings.stop_min_s, 86400)
        t0, t1 = history_range(start, end, settings.max_range_days)
        await require_vehicle(vehicle_id)
        async with db.connection() as conn:
            track = (await store.fetch_tracks(conn, [vehicle_id], t0, t1)).get(vehicle_id)
        if track is None:
            return [], [], None
        x, y = services.city.shapes().projection.to_xy(track.lon, track.lat)
        stops = core.find_stops(track.ts, x, y, track.lon, track.lat, radius_m=radius, min_s=minimum)
        trips = core.find_trips(
            track.ts, track.lon, track.lat, track.speed, stops, moving_kmh=moving_kmh, gap_s=settings.gap_s
        )
        return stops, trips, track

    def place(lon: float, lat: float) -> dict[str, Any]:
        zones = services.city.shapes().zones_at(lon, lat)
        return {
            "lon": round(lon, 6),
            "lat": round(lat, 6),
            "zones": [{"id": z.id, "name": z.name, "kind": z.kind} for z in zones],
        }

    def stop_json(s: core.Stop) -> dict[str, Any]:
        return {
            "start": iso(s.start_ts), "end": iso(s.end_ts), "duration_s": round(s.duration_s, 1),
            **place(s.lon, s.lat),
        }  # fmt: skip

    @r.get("/api/vehicles/{vehicle_id}/stops", dependencies=[Depends(VIEWER)])
    async def vehicle_stops(
        vehicle_id: str = Depends(own_vehicle),
        start: str | None = time_query(),
        end: str | None = time_query(),
        radius_m: float | None = Query(None, gt=0, le=5000, description="default [history] stop_radius_m"),
        min_s: float | None = Query(None, gt=0, le=86400, description="default [history] stop_min_s"),
    ) -> Response:
        """Stops: fixes within radius_m of each other for at least min_s, each with the zones it lies in."""
        stops, _, _ = await stops_and_trips(vehicle_id, start, end, radius_m, min_s)
        return json_response({"vehicle_id": vehicle_id, "stops": [stop_json(s) for s in stops]})

    @r.get("/api/vehicles/{vehicle_id}/trips", dependencies=[Depends(VIEWER)])
    async def vehicle_trips(
        vehicle_id: str = Depends(own_vehicle),
        start: str | None = time_query(),
        end: str | None = time_query(),
        radius_m: float | None = Query(None, gt=0, le=5000, description="stop radius; default [history] stop_radius_m"),
        min_s: float | None = Query(None, gt=0, le=86400, description="stop minimum; default [history] stop_min_s"),
    ) -> Response:
        """Trips: the movements between stops, with distance, driving time and top speed."""
        stops, trips, track = await stops_and_trips(vehicle_id, start, end, radius_m, min_s)
        out = []
        for t in trips:
            assert track is not None
            out.append(
                {
                    "start": iso(t.start_ts),
                    "end": iso(t.end_ts),
                    "duration_s": round(t.end_ts - t.start_ts, 1),
                    **t.stats.json(),
                    "from": place(float(track.lon[t.first]), float(track.lat[t.first])),
                    "to": place(float(track.lon[t.last]), float(track.lat[t.last])),
                }
            )
        return json_response({"vehicle_id": vehicle_id, "trips": out, "stops": len(stops)})

    @r.get("/api/zones/{zone_id}/inside")
    async def zone_inside(
        zone_id: str = Path(..., pattern=NO_NUL),
        start: str | None = time_query("with end: who was inside in [start, end); absent: now"),
        end: str | None = time_query(),
        who: Principal = Depends(VIEWER),
    ) -> Response:
        """Who is inside the zone now (the engine's confirmed presence), or who
        was inside in a past window (stored fixes, bbox in SQL, polygon in shapely)."""
        zone = services.city.shapes().zones.get(zone_id)
        if zone is None:
            raise BadParameter("zone_id", f"unknown zone {zone_id!r}", status=404)
        if start is None and end is None:
            inside = sorted(v for v in services.presence.vehicles_in_zone(zone_id) if who.sees(v))
            return json_response(
                {"zone_id": zone_id, "name": zone.name, "now": True, "vehicles": [{"id": v} for v in inside]}
            )
        t0, t1 = history_range(start, end, settings.max_range_days)
        async with db.connection() as conn:
            tracks = await store.fetch_tracks(conn, [], t0, t1, bbox=zone.geometry.bounds, scope=who.scope)
        per_vehicle = []
        for vehicle_id, t in tracks.items():
            v = core.zone_visits([zone.geometry], [(vehicle_id, t.ts, t.lon, t.lat)], gap_s=settings.gap_s)[0]
            if v.fixes:
                per_vehicle.append(
                    {"id": vehicle_id, "first": iso(v.first_ts), "last": iso(v.last_ts),
                     "inside_s": round(v.inside_s, 1), "fixes": v.fixes}
                )  # fmt: skip
        return json_response({
            "zone_id": zone_id, "name": zone.name, "now": False, "start": t0, "end": t1, "vehicles": per_vehicle,
        })  # fmt: skip

    return r


def iso(ts: float | None) -> datetime | None:
    return None if ts is None else wire.utc(ts)
