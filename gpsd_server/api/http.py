"""The FastAPI application: health, vehicles, tracks, stats and /ws/live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from fastapi import Body, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpsd_server import __version__
from gpsd_server.api import alerts, dispatch, history
from gpsd_server.api import geofences as geofence_files
from gpsd_server.api.auth import (
    ROLES,
    AuthError,
    Principal,
    Role,
    TokenStore,
    create_token,
    require,
    websocket_principal,
)
from gpsd_server.api.params import BadParameter
from gpsd_server.api.web import mount_web
from gpsd_server.errors import DataError
from gpsd_server.sinks.live import MOVING_KMH, SubscriptionError, iso, parse_subscription
from gpsd_server.store import queries

if TYPE_CHECKING:
    from gpsd_server.app import Server

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder()
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
WS_MAX_MESSAGE = 256 * 1024  # room for a subscription to 10,000 vehicles


def create_app(server: Server) -> FastAPI:
    app = FastAPI(
        title="gpsd-server",
        version=__version__,
        description="Real-time GPS monitoring API. Every route except /healthz and the docs needs "
        "`Authorization: Bearer <token>` (websockets: `?token=`); roles viewer < operator < admin.",
    )
    app.state.tokens = TokenStore(server.pool)

    @app.exception_handler(BadParameter)
    async def bad_parameter(_: Request, exc: BadParameter) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.detail)

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(status_code=exc.status_code, content=exc.detail, headers=headers)

    @app.exception_handler(psycopg.DataError)
    async def bad_data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value the database cannot take (NUL characters, out-of-range
        # numbers) that no route check caught: the client's input, not a 500.
        log.warning("%s %s: value refused by the database: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=400, content={"error": "invalid value", "parameter": "request"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body")]
        return JSONResponse(
            status_code=400,
            content={"error": str(first.get("msg", "invalid request")), "parameter": ".".join(loc) or "body"},
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        db_ok = await server.database_ok()
        body = {
            "status": "ok" if db_ok and server.mqtt_connected and not server.city_error else "degraded",
            "database": db_ok,
            "geofences": server.city_error or "ok",
            "timescaledb": server.timescaledb,
            "mqtt": server.mqtt_connected,
            "version": __version__,
        }
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/metrics", tags=["ops"], dependencies=[Depends(require("viewer"))])
    async def metrics() -> Response:
        return Response(generate_latest(server.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/stats", tags=["ops"], dependencies=[Depends(require("viewer"))])
    async def stats() -> dict[str, Any]:
        return server.stats()

    @app.get("/api/me", tags=["auth"])
    async def me(who: Principal = Depends(require("viewer"))) -> dict[str, str]:
        return {"name": who.name, "role": who.role}

    @app.post("/api/tokens", tags=["auth"], status_code=201)
    async def new_token(
        name: str = Body(..., embed=True, min_length=1, max_length=100, pattern=NO_NUL),
        role: Role = Body(..., embed=True),
        _: Principal = Depends(require("admin")),
    ) -> dict[str, str]:
        """Create a token; the response is the only time it is shown."""
        async with server.pool.connection() as conn:
            token = await create_token(conn, name=name, role=role)
        return {"name": name, "role": role, "token": token}

    @app.get("/api/tokens", tags=["auth"], dependencies=[Depends(require("admin"))])
    async def list_tokens() -> dict[str, Any]:
        async with server.pool.connection() as conn:
            cur = await conn.execute("SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
            rows = await cur.fetchall()
        return {
            "tokens": [
                {"id": r[0], "name": r[1], "role": r[2], "created_at": r[3].isoformat(),
                 "revoked": r[4] is not None}
                for r in rows
            ]
        }  # fmt: skip

    @app.delete("/api/tokens/{token_id}", tags=["auth"], dependencies=[Depends(require("admin"))])
    async def revoke_token(token_id: int) -> dict[str, Any]:
        async with server.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,)
            )
            if cur.rowcount == 0:
                raise BadParameter("token_id", "no such active token", status=404)
        app.state.tokens.forget()
        return {"id": token_id, "revoked": True}

    app.include_router(alerts.router(server))
    app.include_router(dispatch.router(server))
    app.include_router(history.router(server))
    app.include_router(geofence_files.router(server))

    @app.get("/api/geofences", tags=["city"], dependencies=[Depends(require("viewer"))])
    async def geofences() -> Response:
        """Every city feature (zones, routes, cameras, information points) as one
        GeoJSON FeatureCollection, as loaded from the geofences folder."""
        return Response(server.city.geojson, media_type="application/geo+json")

    @app.post("/api/geofences/reload", tags=["city"], dependencies=[Depends(require("admin"))])
    async def reload_geofences() -> dict[str, Any]:
        """Re-read the geofences folder; on any error the previous set stays in force."""
        try:
            data = server.load_city()
        except DataError as exc:
            raise BadParameter("geofences", str(exc), status=422) from None
        await server.sync_registry()
        c = data.city
        return {
            "zones": len(c.zones), "routes": len(c.routes), "markers": len(c.markers),
            "vehicles": len(c.vehicles or {}), "files": list(data.files),
        }  # fmt: skip

    @app.get("/api/map", tags=["city"], dependencies=[Depends(require("viewer"))])
    async def map_settings() -> dict[str, Any]:
        m = server.cfg.map
        centre = m.center or server.city_centre()
        return {
            "city": server.cfg.city.name,
            "timezone": server.cfg.city.timezone,
            "center": list(centre) if centre else None,
            "zoom": m.zoom,
            "tile_url": m.tile_url or None,
            "tile_crs": m.tile_crs,
            "tile_attribution": m.tile_attribution,
        }

    @app.get("/api/vehicles", tags=["vehicles"], dependencies=[Depends(require("viewer"))])
    async def vehicles() -> dict[str, Any]:
        async with server.pool.connection() as conn:
            rows = await queries.last_positions(conn)
        now = datetime.now(UTC)
        return {
            "vehicles": [
                {
                    "id": r.vehicle_id,
                    "plate": r.plate,
                    "class": r.vehicle_class,
                    "company": r.company,
                    "ts": r.ts.isoformat(),
                    "age_s": round((now - r.ts).total_seconds(), 1),
                    "lon": r.lon,
                    "lat": r.lat,
                    "speed": r.speed_kmh,
                    "heading": r.heading,
                    "alarm": r.alarm,
                    "status": "moving" if (r.speed_kmh or 0) >= MOVING_KMH else "stopped",
                }
                for r in rows
            ]
        }

    @app.websocket("/ws/live")
    async def ws_live(ws: WebSocket) -> None:
        await live_session(server, ws)

    mount_web(app)
    return app


async def live_session(server: Server, ws: WebSocket) -> None:
    """Snapshot on connect, then positions; a client may send
    ``{"type": "subscribe", "bbox": [...], "classes": [...], "vehicles": [...]}``."""
    hub = server.hub
    if await websocket_principal(ws, "viewer") is None:
        return
    await ws.accept()
    client = hub.add_client()
    if client is None:
        await ws.close(code=1013, reason="too many clients")
        return
    try:
        await ws.send_text(hub.snapshot(client, server.cfg.http.ws_snapshot_max).decode())

        async def sender() -> None:
            while True:
                data = await client.queue.get()
                if not data:  # the hub dropped this client
                    await ws.close(code=1008, reason=client.dropped or "dropped")
                    return
                await ws.send_text(data.decode())

        send_task = asyncio.create_task(sender(), name="ws-sender")
        try:
            while not send_task.done():
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                # Replies go through the client's queue: one sender per socket.
                if text is None:
                    hub.reply(client, b'{"type":"error","error":"binary messages are not supported"}')
                    continue
                if len(text) > WS_MAX_MESSAGE:
                    hub.reply(client, b'{"type":"error","error":"message too large"}')
                    continue
                try:
                    msg = _decoder.decode(text)
                    if isinstance(msg, dict) and msg.get("type") == "subscribe":
                        client.subscription = parse_subscription(msg)
                        hub.reply(client, hub.snapshot(client, server.cfg.http.ws_snapshot_max))
                    else:
                        raise SubscriptionError("type must be subscribe")
                except (msgspec.DecodeError, SubscriptionError) as exc:
                    hub.reply(client, msgspec.json.encode({"type": "error", "error": str(exc)[:200]}))
                except RecursionError:
                    hub.reply(client, b'{"type":"error","error":"JSON nested too deeply"}')
        finally:
            send_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await send_task
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove_client(client)


__all__ = ["ROLES", "create_app", "iso"]
