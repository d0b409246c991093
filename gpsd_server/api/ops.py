"""Health, metrics and counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpsd_server import __version__
from gpsd_server.api.auth import require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.openapi import json_content
from gpsd_server.api.responses import PlainTextResponse


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["ops"])
    status = services.status

    @r.get(
        "/healthz",
        responses={
            200: json_content("Health"),
            503: {"description": "degraded: what is not fine", **json_content("Health")},
        },
    )
    async def healthz() -> JSONResponse:
        """200 when database, broker and geofences are fine, else 503 naming what is not.
        Never waits: the database's state is the background probe's last answer."""
        db = services.db
        city_error = services.city.error
        problems = []
        if not db.usable:
            problems.append(f"database {db.problem}")
        if not status.mqtt_connected:
            problems.append("mqtt: not connected to the broker")
        if city_error:
            problems.append(f"geofences: {city_error}")
        body = {
            "status": "degraded" if problems else "ok",
            "database": db.usable,
            "geofences": city_error or "ok",
            "timescaledb": status.timescaledb,
            "mqtt": status.mqtt_connected,
            "problems": problems,
            "version": __version__,
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @r.get("/metrics", dependencies=[Depends(require("viewer"))], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(status.metrics()), media_type=CONTENT_TYPE_LATEST)

    @r.get("/api/stats", dependencies=[Depends(require("viewer"))])
    async def stats() -> dict[str, Any]:
        return status.stats()

    return r
