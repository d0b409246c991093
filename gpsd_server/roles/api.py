"""The api role: the page, the HTTP API and ``/ws/live`` over the shared
database, the token store and the connection guard, served by uvicorn."""

from __future__ import annotations

import asyncio

from gpsd_server.api.auth import TokenStore
from gpsd_server.api.deps import ApiServices, CaseService, CityView, LiveFeed, Presence, ServerStatus
from gpsd_server.api.guard import ConnectionGuard, ensure_descriptors
from gpsd_server.api.http import create_app
from gpsd_server.api.serve import HttpServer
from gpsd_server.config import state_path
from gpsd_server.directory import VehicleDirectory
from gpsd_server.settings import Config
from gpsd_server.store.db import Database


class ApiRole:
    def __init__(
        self, cfg: Config, *, db: Database, directory: VehicleDirectory, city: CityView, live: LiveFeed,
        presence: Presence, status: ServerStatus, cases: CaseService | None,
    ) -> None:  # fmt: skip
        c = cfg
        self._http = c.http
        self._db_pool = c.database.pool_max_size
        self.tokens = TokenStore(
            db, check_s=c.http.token_check_s,
            cache_path=state_path(c, "tokens", f"{c.mqtt.client_id.replace('/', '_')}.json"),
        )  # fmt: skip
        self.guard = ConnectionGuard(
            limit=c.http.limit_concurrency, header_timeout_s=c.http.header_timeout_s,
            log_interval_s=c.http.refused_log_interval_s,
        )  # fmt: skip
        services = ApiServices(
            config=c, db=db, tokens=self.tokens, directory=directory, city=city,
            live=live, presence=presence, status=status, cases=cases,
        )  # fmt: skip
        self.app = create_app(services)
        self._server: HttpServer | None = None
        self.port: int | None = None

    def prepare(self) -> None:
        ensure_descriptors(self._http.limit_concurrency, extra=self._db_pool)

    async def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Serve; returns once listening (``port``), with the role's other tasks."""
        self._server = HttpServer(self.app, self.guard, self._http)
        self.port = await self._server.start(tg)
        return [tg.create_task(self.tokens.check_forever(), name="token-check")]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
