"""Serving the API: uvicorn under the connection guard, without uvicorn's own
signal handling (the server owns shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from gpsd_server.api.guard import ConnectionGuard, GuardMiddleware, protocol_classes
from gpsd_server.settings import HttpSettings


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, app: FastAPI, guard: ConnectionGuard, http: HttpSettings) -> None:
        self._http = http
        http_protocol, ws_protocol = protocol_classes(guard)
        self._server = _Uvicorn(
            uvicorn.Config(
                GuardMiddleware(app, guard), host=http.host, port=http.port, http=http_protocol,
                ws=ws_protocol, lifespan="off", log_level="warning", access_log=False, ws_max_size=1024 * 1024,
                ws_per_message_deflate=http.ws_compression,
                # The guard refuses connections past the limit first (counted); uvicorn's own
                # limit, one higher, is only a backstop.
                limit_concurrency=http.limit_concurrency + 1, timeout_keep_alive=http.timeout_keep_alive_s,
                backlog=http.backlog, timeout_graceful_shutdown=max(1, round(http.shutdown_timeout_s)),
            )
        )  # fmt: skip

    async def start(self, tg: asyncio.TaskGroup) -> int:
        """Serve in ``tg``; returns the port once listening."""
        serving = tg.create_task(self._server.serve(), name="http")
        web = self._server
        while not web.started:
            if serving.done():
                raise RuntimeError(f"HTTP server on {self._http.host}:{self._http.port} did not start")
            await asyncio.sleep(0.02)
        return int(web.servers[0].sockets[0].getsockname()[1]) if web.servers else self._http.port

    def stop(self) -> None:
        self._server.should_exit = True
