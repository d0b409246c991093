"""12319 dispatch: the nearest online patrol cars to a case, and the record
of who was sent; nearest cameras to a place (for the alert desk)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, Query

from gpsd_server.api.auth import Principal, require
from gpsd_server.api.params import BadParameter

if TYPE_CHECKING:
    from gpsd_server.app import Server

EARTH_RADIUS_M = 6371008.8
PATROL = "patrol"


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def router(server: Server) -> APIRouter:
    r = APIRouter(tags=["dispatch"])
    d = server.cfg.dispatch

    @r.get("/api/dispatch/nearest", dependencies=[Depends(require("viewer"))])
    async def nearest_patrol(
        lon: float = Query(..., ge=-180, le=180),
        lat: float = Query(..., ge=-90, le=90),
        limit: int = Query(5, ge=1, le=50),
    ) -> dict[str, Any]:
        """Online patrol cars by straight-line distance, with minutes at city speed."""
        now = time.time()
        found: list[dict[str, Any]] = []
        for p in server.hub.positions.values():
            age = now - p.ts
            if p.vehicle_class != PATROL or age > d.online_max_age_s:
                continue
            dist = haversine_m(lon, lat, p.lon, p.lat)
            found.append(
                {
                    "id": p.vehicle_id,
                    "plate": p.plate,
                    "lon": p.lon,
                    "lat": p.lat,
                    "distance_m": round(dist),
                    "eta_min": round(dist * d.road_factor / (d.city_speed_kmh / 3.6) / 60, 1),
                    "age_s": round(age),
                }
            )
        found.sort(key=lambda v: v["distance_m"])
        return {"vehicles": found[:limit], "city_speed_kmh": d.city_speed_kmh}

    @r.post("/api/dispatch", status_code=201)
    async def record_dispatch(
        lon: float = Body(..., ge=-180, le=180),
        lat: float = Body(..., ge=-90, le=90),
        vehicle_id: str = Body(..., min_length=1, max_length=64),
        note: str = Body("", max_length=2000),
        who: Principal = Depends(require("operator")),
    ) -> dict[str, Any]:
        pos = server.hub.positions.get(vehicle_id)
        if pos is None or pos.vehicle_class != PATROL:
            raise BadParameter("vehicle_id", f"{vehicle_id!r} is not a known patrol vehicle", status=404)
        dist = haversine_m(lon, lat, pos.lon, pos.lat)
        async with server.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO dispatches (lon, lat, vehicle_id, distance_m, note, created_by)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, created_at",
                (lon, lat, vehicle_id, dist, note, who.name),
            )
            row = await cur.fetchone()
        assert row is not None
        return {"id": row[0], "vehicle_id": vehicle_id, "distance_m": round(dist), "created_at": row[1].isoformat()}

    @r.get("/api/dispatch", dependencies=[Depends(require("viewer"))])
    async def list_dispatches(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        async with server.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, lon, lat, vehicle_id, distance_m, note, created_by, created_at"
                " FROM dispatches ORDER BY created_at DESC LIMIT %s",
                (limit,),
            )
            rows = await cur.fetchall()
        keys = ("id", "lon", "lat", "vehicle_id", "distance_m", "note", "created_by", "created_at")
        return {"dispatches": [{**dict(zip(keys, row, strict=True)), "created_at": row[7].isoformat()} for row in rows]}

    @r.get("/api/cameras/nearest", tags=["city"], dependencies=[Depends(require("viewer"))])
    async def nearest_cameras(
        lon: float = Query(..., ge=-180, le=180),
        lat: float = Query(..., ge=-90, le=90),
        limit: int = Query(3, ge=1, le=20),
    ) -> dict[str, Any]:
        cams = [
            {"id": m.id, "name": m.name, "lon": m.geometry.x, "lat": m.geometry.y,
             "distance_m": round(haversine_m(lon, lat, m.geometry.x, m.geometry.y))}
            for m in server.city.city.markers
            if m.kind == "camera"
        ]  # fmt: skip
        cams.sort(key=lambda c: c["distance_m"])
        return {"cameras": cams[:limit]}

    return r
