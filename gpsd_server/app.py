"""Wiring: a node is the composition of its roles (:mod:`gpsd_server.roles`) as
named tasks in a TaskGroup, shut down in order (stop intake, flush the writer,
stop HTTP). ``run`` is both roles around one in-memory hub; ``ingest`` and
``api`` are one each, the ``[cluster]`` broker between them. Nothing waits for
the database (:mod:`gpsd_server.bringup`). Nothing but wiring lives here."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection

from prometheus_client.registry import CollectorRegistry

from gpsd_server import metrics
from gpsd_server.bringup import DatabaseStart
from gpsd_server.cases import CaseDesk
from gpsd_server.cityfolder import CityData, CityFolder, CityKeeper, VertexBudget
from gpsd_server.cluster.feed import BrokerHub, HubListener
from gpsd_server.cluster.node import ApiNodeStart, NodeStatus
from gpsd_server.config import resolve
from gpsd_server.core.engine import Engine
from gpsd_server.directory import VehicleDirectory
from gpsd_server.errors import DataError, StartupError

__all__ = ["Server", "StartupError"]
from gpsd_server.registry import RegistrySync
from gpsd_server.retention import run_retention
from gpsd_server.roles.api import ApiRole
from gpsd_server.roles.ingest import IngestRole
from gpsd_server.settings import Config
from gpsd_server.sinks.hub import LiveHub
from gpsd_server.status import Status
from gpsd_server.store.db import Database
from gpsd_server.store.schema import SchemaInfo

log = logging.getLogger(__name__)

BOTH = ("ingest", "api")


class Server:
    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.time, roles: Collection[str] = BOTH) -> None:
        """``clock``: the one wall clock of the batch cycle, the rule tick and
        12319 cases (tests drive it). ``roles``: ingest, api or both."""
        self.cfg = c = cfg
        cluster = c.cluster.engine != "none"
        if cluster == (set(roles) == set(BOTH)):
            raise StartupError(
                "with [cluster] engine = none one process plays both roles (gpsd-server run); with a cluster"
                " engine run gpsd-server ingest and gpsd-server api as processes of their own"
            )
        self.db = Database(c.database)
        self.directory = VehicleDirectory()
        self.hub = LiveHub(
            max_clients=c.http.ws_max_clients, send_queue=c.http.ws_send_queue, moving_kmh=c.rules.moving_kmh,
            flush_ms=c.http.ws_flush_ms,
        )  # fmt: skip
        self.origin = f"{c.mqtt.client_id}-{os.getpid()}"  # this node on the hub exchange
        sink = BrokerHub(c.cluster, origin=self.origin) if cluster else self.hub
        ingest, api = "ingest" in roles, "api" in roles
        self.role = IngestRole(c, db=self.db, directory=self.directory, hub=sink, clock=clock) if ingest else None
        self.engine = self.role.engine if self.role else Engine(settings=c.rules, tz=c.city.timezone)
        self.city = CityKeeper(
            CityFolder(resolve(c, c.geofences.dir)), self.engine.build_geometry, on_swap=[self._use_city],
            after_swap=RegistrySync(self.db),
            budget=VertexBudget(c.geofences.max_feature_vertices, c.geofences.max_city_vertices),
        )  # fmt: skip
        self.cases: CaseDesk | None = None
        self.started_at = time.time()
        self.feed = HubListener(c.cluster, hub=self.hub, origin=self.origin) if cluster and api else None
        sync = lambda: RegistrySync(self.db)(self.city.current)  # noqa: E731
        self.start: DatabaseStart | ApiNodeStart = ApiNodeStart(
            db=self.db, settings=c.database, hub=self.hub, directory=self.directory, sync_registry=sync,
            on_schema=self._use_schema,
        )  # fmt: skip
        status = self._wire_ingest(self.role, clock, sync, cases=not cluster) if self.role else None
        self.api = ApiRole(
            c, db=self.db, directory=self.directory, city=self.city, live=self.feed or self.hub,
            presence=self.engine, status=self, cases=self.cases,
        ) if api else None  # fmt: skip
        self.tokens, self.app = (self.api.tokens if self.api else None), (self.api.app if self.api else None)
        if status is not None and self.api is not None:
            status.http, status.tokens = self.api.guard, self.api.tokens
        self.status: Status | NodeStatus = status or NodeStatus(self.feed, self.hub)  # type: ignore[arg-type]
        self._metrics = metrics.registry(status) if status else CollectorRegistry()
        self.http_port: int | None = None

    def _wire_ingest(
        self, role: IngestRole, clock: Callable[[], float], sync: Callable[[], Awaitable[None]], *, cases: bool
    ) -> Status:
        c = self.cfg
        self.ingest, self.pipeline, self.writer, self.ledger = role.source, role.pipeline, role.writer, role.ledger
        self.gateway, self.health = role.terminals.gateway, role.terminals.health
        if cases:  # 12319 cases: the pipeline feeds them fixes and ticks, they raise alerts through it
            self.cases = CaseDesk(
                db=self.db, settings=c.cases, dispatch=c.dispatch, timezone=c.city.timezone,
                moving_kmh=c.rules.moving_kmh, city=self.city, live=self.hub, directory=self.directory, clock=clock,
            )  # fmt: skip
            role.pipeline.cases = self.cases
            self.cases.raise_events, self.cases.wake_commands = role.pipeline.raise_events, role.terminals.commands.wake
        self.start = DatabaseStart(
            db=self.db, settings=c.database, writers=role.writer, engine=role.engine, ledger=role.ledger,
            hub=self.hub, directory=self.directory, sync_registry=sync,
            on_schema=self._use_schema, started_at=self.started_at,
            also_restore=[self.cases.restore] if self.cases else [], restore_all=cases,
        )  # fmt: skip
        role.intake_open = self.start.intake_open
        return Status(
            role.pipeline, role.writer, self.hub, role.ledger, role.source, role.engine.filter_counts,
            self.gateway or role.terminals.commands, started_at=self.started_at, intake=role.intake,
        )  # fmt: skip

    # -- what the API asks of the server (api.deps.ServerStatus) -------------
    @property
    def mqtt_connected(self) -> bool:
        return self.status.mqtt_connected if isinstance(self.status, NodeStatus) else self.ingest.is_connected

    @property
    def timescaledb(self) -> bool:
        return bool(self.status.timescaledb)

    def stats(self) -> dict[str, object]:
        return dict(self.status.stats())

    def metrics(self) -> CollectorRegistry:
        return self._metrics

    # -- wiring callbacks ----------------------------------------------------

    def _use_city(self, data: CityData) -> None:
        if self.role is not None:
            self.role.use_city(data)
        else:
            self.engine.reload(data.city, data.geometry)
        self.directory.use_city(data.city)

    def _use_schema(self, info: SchemaInfo) -> None:
        self.status.timescaledb = info.timescaledb

    async def _retention(self, done: asyncio.Event) -> None:
        await done.wait()
        await run_retention(self.db, self.cfg.history, lambda: self.timescaledb)

    # -- running ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        if self.role is not None:
            self.status.gc_clock.install()  # type: ignore[union-attr]  # an ingest node's
        if self.api is not None:
            self.api.prepare()
        try:
            zones = len((await self.city.load()).city.zones)
        except DataError:  # logged by the keeper
            zones = 0
        if not zones and not self.cfg.geofences.allow_empty:
            raise StartupError(
                f"no zones from {self.city.folder.folder}: {self.city.error or 'the folder is empty'};"
                " nothing would be checked (set [geofences] allow_empty = true to run anyway)"
            )
        await self.db.open()
        async with asyncio.TaskGroup() as tg:
            probe = tg.create_task(self.db.probe_forever(), name="database-probe")
            intake = [tg.create_task(self.start.run(tg), name="database-start")]
            if self.role is not None and isinstance(self.status, Status):
                intake += self.role.start(tg)
                intake.append(
                    tg.create_task(self.status.log_throughput(self.cfg.ingest.stats_log_interval_s), name="stats-log")
                )
            if self.cases is not None:
                intake.append(tg.create_task(self.cases.run(), name="cases"))
            if self.feed is not None:
                intake.append(tg.create_task(self.feed.run(), name="hub-feed"))
            if self.api is not None:
                intake.append(tg.create_task(self._retention(self.start.done), name="retention"))
                intake += await self.api.start(tg)
                self.http_port = self.api.port
                log.info("HTTP on http://%s:%d/ (live: /ws/live, API docs: /docs)", self.cfg.http.host, self.http_port)
            if ready is not None:
                await self.start.settled.wait()
                ready.set()
            await stop.wait()
            for task in intake:
                task.cancel()
            await asyncio.wait(intake, timeout=30)  # a worker gives its partitions back through the writer
            if self.role is not None:
                log.info("shutting down: intake stopped, flushing %d queued fixes", self.role.writer.queued_rows)
                await self.role.writer.close()
            if self.api is not None:
                self.api.stop()
            probe.cancel()
        await self.db.close()
        if self.role is not None:
            self.status.gc_clock.uninstall()  # type: ignore[union-attr]
            log.info("stopped; %d fixes stored this run", self.role.writer.stats.rows_inserted)
