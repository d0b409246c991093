"""12319 dispatch: the nearest online patrol cars to a case, and the record
of who was sent; nearest cameras to a place (for the alert desk).

A patrol car with a JT/T 808 terminal is told at once: the case note and the
place go to its screen as a 0x8300 text message (queued like any terminal
command, see api/terminals.py), and the dispatch carries the command's id
and status until the terminal acknowledges it."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response

from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import NO_NUL, BadParameter
from gpsd_server.api.responses import json_response
from gpsd_server.api.terminals import queue_command, terminal_phone
from gpsd_server.core.geo import haversine_m
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.store import commands as commands_store
from gpsd_server.store import dispatch as store

PATROL = "patrol"


def dispatch_text(dispatch_id: int, note: str, place: str, lon: float, lat: float) -> str:
    """What the patrol car's terminal shows (and reads out)."""
    where = f"{place}（{lat:.5f},{lon:.5f}）" if place else f"{lat:.5f},{lon:.5f}"
    return f"【12319派单#{dispatch_id}】{note or '请前往处置'}｜地点：{where}"


def _command(row: commands_store.CommandRow | None) -> dict[str, Any] | None:
    return None if row is None else {"id": row.id, "status": row.status, "kind": row.kind, "updated_at": row.updated_at}


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["dispatch"])
    d = services.config.dispatch

    @r.get("/api/dispatch/nearest", dependencies=[Depends(require("viewer"))])
    async def nearest_patrol(
        lon: float = Query(..., ge=-180, le=180),
        lat: float = Query(..., ge=-90, le=90),
        limit: int = Query(5, ge=1, le=50),
    ) -> dict[str, Any]:
        """Online patrol cars by straight-line distance, with minutes at city speed."""
        now = time.time()
        found: list[dict[str, Any]] = []
        for p in services.live.positions.values():
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
        note: str = Body("", max_length=2000, pattern=NO_NUL),
        place: str = Body("", max_length=200, pattern=NO_NUL),
        who: Principal = Depends(require("operator")),
    ) -> Response:
        pos = services.live.positions.get(vehicle_id)
        if pos is None or pos.vehicle_class != PATROL:
            raise BadParameter("vehicle_id", f"{vehicle_id!r} is not a known patrol vehicle", status=404)
        dist = haversine_m(lon, lat, pos.lon, pos.lat)
        phone = terminal_phone(services, vehicle_id)
        async with services.db.connection() as conn, conn.transaction():
            dispatch_id, created_at = await store.record(
                conn, lon=lon, lat=lat, vehicle_id=vehicle_id, distance_m=dist, note=note, by=who.name
            )
            command = None
            if phone is not None:
                text = dl.TextMessage(dispatch_text(dispatch_id, note, place, lon, lat))
                command = await queue_command(
                    conn, vehicle_id=vehicle_id, phone=phone, kind="text", command=text, by=who.name,
                    dispatch_id=dispatch_id,
                )  # fmt: skip
        body = {
            "id": dispatch_id, "vehicle_id": vehicle_id, "distance_m": round(dist), "created_at": created_at,
            "terminal": phone is not None, "command": _command(command),
        }  # fmt: skip
        return json_response(body, status=201)

    @r.get("/api/dispatch", dependencies=[Depends(require("operator"))])
    async def list_dispatches(limit: int = Query(50, ge=1, le=1000)) -> Response:
        async with services.db.connection() as conn:
            rows = await store.recent(conn, limit)
            sent = await commands_store.for_dispatches(conn, [x.id for x in rows])
        return json_response({
            "dispatches": [
                {"id": x.id, "lon": x.lon, "lat": x.lat, "vehicle_id": x.vehicle_id, "distance_m": x.distance_m,
                 "note": x.note, "created_by": x.created_by, "created_at": x.created_at,
                 "command": _command(sent.get(x.id))}
                for x in rows
            ]
        })  # fmt: skip

    @r.get("/api/cameras/nearest", tags=["city"], dependencies=[Depends(require("viewer", company="city"))])
    async def nearest_cameras(
        lon: float = Query(..., ge=-180, le=180),
        lat: float = Query(..., ge=-90, le=90),
        limit: int = Query(3, ge=1, le=20),
    ) -> dict[str, Any]:
        cams = [
            {"id": m.id, "name": m.name, "lon": m.geometry.x, "lat": m.geometry.y,
             "distance_m": round(haversine_m(lon, lat, m.geometry.x, m.geometry.y))}
            for m in services.city.current.city.markers
            if m.kind == "camera"
        ]  # fmt: skip
        cams.sort(key=lambda c: c["distance_m"])
        return {"cameras": cams[:limit]}

    return r
