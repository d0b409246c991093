"""The FastAPI application: every route module mounted on one app, the error
handlers that turn bad input into a 4xx naming the parameter, and the page."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gpsd_server import __version__
from gpsd_server.api import (
    alert_batch,
    alerts,
    basemaps,
    cases,
    city,
    dashboard,
    dispatch,
    geofences,
    history,
    live,
    openapi,
    ops,
    replay,
    reports,
    terminals,
    tiles,
    tokens,
    vehicles,
)  # fmt: skip
from gpsd_server.api.auth import PUBLIC_PATHS, ROLES, AuthError
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.docs import install_docs
from gpsd_server.api.params import PATTERN_MEANINGS, BadParameter
from gpsd_server.api.web import mount_web
from gpsd_server.store.db import DatabaseUnavailable

log = logging.getLogger(__name__)


class SingleValuedQuery:
    """Every query parameter of this API takes one value: one given twice is
    refused (400 naming it) rather than silently read as its last value.
    Unknown parameters are ignored."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            seen: set[str] = set()
            for key, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
                if key in seen:
                    body = {"error": "given more than once", "parameter": key[:100]}
                    await JSONResponse(body, status_code=400)(scope, receive, send)
                    return
                seen.add(key)
        await self.app(scope, receive, send)


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="gpsd-server",
        version=__version__,
        description="Real-time GPS monitoring API. Every route except /healthz and the docs needs "
        "`Authorization: Bearer <token>` (websockets: `?token=`); roles viewer < operator < admin, and "
        "company accounts that see only their company's vehicles.",
        docs_url=None,  # served from local files by api/docs.py
        redoc_url=None,
    )
    app.state.tokens = services.tokens
    # What require() needs to scope a company account: its fleet, and whether it may act on alerts.
    app.state.directory = services.directory
    app.state.company_may_ack = services.config.desk.company_may_ack

    @app.exception_handler(BadParameter)
    async def bad_parameter(_: Request, exc: BadParameter) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.detail)

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if exc.status_code == 503:
            headers = {"Retry-After": "5"}
        return JSONResponse(status_code=exc.status_code, content=exc.detail, headers=headers)

    @app.exception_handler(DatabaseUnavailable)
    async def database_away(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        # Answered at once (the health probe already knows): the route needs the
        # database; routes that do not keep working.
        return JSONResponse(
            status_code=503,
            content={"error": f"database {exc.reason}", "parameter": None},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(psycopg.DataError)
    async def bad_data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value the database cannot take (NUL characters, out-of-range
        # numbers) that no route check caught: the client's input, not a 500.
        method = getattr(request, "method", "WEBSOCKET")  # a websocket route's handler gets no method
        log.warning("%s %s: value refused by the database: %s", method, request.url.path, exc)
        return JSONResponse(status_code=400, content={"error": "invalid value", "parameter": "request"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Raised by the framework itself (a body that is not JSON, 404, 405): the
        # same body shape as every other error.
        detail = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail), "parameter": None}
        if exc.status_code == 400 and not isinstance(exc.detail, dict):
            # FastAPI's own 400 is its body parse failing (invalid UTF-8, nesting
            # or a number past the JSON parser's limits): the body is the parameter.
            detail = {"error": f"the body is not valid JSON ({exc.detail})", "parameter": "body"}
        return JSONResponse(status_code=exc.status_code, content=detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body")]
        msg = str(first.get("msg", "invalid request"))
        kind = first.get("type")
        if kind == "json_invalid":  # its loc is the byte offset, not a parameter
            loc, msg = [], f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
        elif kind == "string_pattern_mismatch":
            # not the pattern itself: what it stands for
            msg = PATTERN_MEANINGS.get(str(first.get("ctx", {}).get("pattern", "")), msg)
        return JSONResponse(status_code=400, content={"error": msg, "parameter": ".".join(loc) or "body"})

    modules = (ops, tokens, city, vehicles, live, alerts, dispatch, terminals, history, reports, replay, geofences)
    desk = (dashboard, alert_batch)  # the supervisor's desk (issue 16)
    for module in desk:
        app.include_router(module.router(services))
    offline = basemaps.open_offline(services.config.map, services.config.base_dir)
    if offline is not None:
        tiles.mount_tiles(app, offline)
    install_docs(app)
    for module in modules:
        app.include_router(module.router(services))
    if services.cases is not None:  # 12319 cases (issue 17)
        app.include_router(cases.router(services, services.cases))
    offered = basemaps.describe(services.config.map, offline)
    mount_web(app, tile_urls=[layer["url"] for preset in offered for layer in preset["layers"]])
    app.add_middleware(SingleValuedQuery)
    openapi.install(app, PUBLIC_PATHS)
    return app


__all__ = ["ROLES", "create_app"]
