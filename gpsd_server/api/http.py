"""The FastAPI application: every route module mounted on one app, the error
handlers that turn bad input into a 4xx naming the parameter, and the page."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gpsd_server import __version__
from gpsd_server.api import (
    alerts,
    cases,
    city,
    dispatch,
    geofences,
    history,
    live,
    ops,
    replay,
    reports,
    terminals,
    tokens,
    vehicles,
)  # fmt: skip
from gpsd_server.api.auth import ROLES, AuthError
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import BadParameter
from gpsd_server.api.web import mount_web

log = logging.getLogger(__name__)


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="gpsd-server",
        version=__version__,
        description="Real-time GPS monitoring API. Every route except /healthz and the docs needs "
        "`Authorization: Bearer <token>` (websockets: `?token=`); roles viewer < operator < admin.",
    )
    app.state.tokens = services.tokens

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

    modules = (ops, tokens, city, vehicles, live, alerts, dispatch, terminals, history, reports, replay, geofences)
    for module in modules:
        app.include_router(module.router(services))
    if services.cases is not None:  # 12319 cases (issue 17)
        app.include_router(cases.router(services, services.cases))
    mount_web(app)
    return app


__all__ = ["ROLES", "create_app"]
