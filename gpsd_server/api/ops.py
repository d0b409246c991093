"""Health, metrics and counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpsd_server import __version__
from gpsd_server.api.auth import require
from gpsd_server.api.deps import ApiServices


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["ops"])
    status = services.status

    @r.get("/healthz")
    async def healthz() -> JSONResponse:
        db_ok = await services.db.ping()
        city_error = services.city.error
        body = {
            "status": "ok" if db_ok and status.mqtt_connected and not city_error else "degraded",
            "database": db_ok,
            "geofences": city_error or "ok",
            "timescaledb": status.timescaledb,
            "mqtt": status.mqtt_connected,
            "version": __version__,
        }
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @r.get("/metrics", dependencies=[Depends(require("viewer"))])
    async def metrics() -> Response:
        return Response(generate_latest(status.metrics()), media_type=CONTENT_TYPE_LATEST)

    @r.get("/api/stats", dependencies=[Depends(require("viewer"))])
    async def stats() -> dict[str, Any]:
        return status.stats()

    return r
