"""Every vehicle with its last position."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gpsd_server import wire
from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.responses import json_response, schema_of
from gpsd_server.store import vehicles as store


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["vehicles"])
    moving_kmh = services.config.rules.moving_kmh

    @r.get("/api/vehicles", responses=schema_of("VehicleList"))
    async def vehicles(who: Principal = Depends(require("viewer", company="own"))) -> Response:
        async with services.db.connection() as conn:
            rows = await store.last_positions(conn, scope=who.scope)
        now = datetime.now(UTC)
        body = wire.VehicleList(
            vehicles=[
                wire.VehicleRow(
                    id=v.vehicle_id,
                    plate=v.plate,
                    vehicle_class=v.vehicle_class,
                    company=v.company,
                    ts=v.ts,
                    age_s=round((now - v.ts).total_seconds(), 1),
                    lon=v.lon,
                    lat=v.lat,
                    speed=v.speed_kmh,
                    heading=v.heading,
                    alarm=v.alarm,
                    status=wire.status(v.speed_kmh, moving_kmh),
                )
                for v in rows
            ]
        )
        return json_response(body)

    return r
