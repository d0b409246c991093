"""Wiring: build the components from the config, run them as named tasks in a
TaskGroup, shut down in order (stop intake, flush the writer, stop HTTP).

Nothing waits for the database: HTTP, ingest and the track writer start at
once, and what needs the database runs when it answers
(:mod:`gpsd_server.bringup`).

Nothing but wiring lives here; see docs/architecture.md for the house.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import psycopg
import uvicorn
from prometheus_client.registry import CollectorRegistry

from gpsd_server import metrics
from gpsd_server.api.auth import TokenStore
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.guard import ConnectionGuard, GuardMiddleware, ensure_descriptors, protocol_classes
from gpsd_server.api.http import create_app
from gpsd_server.bringup import DatabaseStart, WriterSwitch
from gpsd_server.cases import CaseDesk
from gpsd_server.cityfolder import CityData, CityFolder, CityKeeper, VertexBudget
from gpsd_server.config import resolve, spool_path, state_path
from gpsd_server.core.decode import Decoder, TopicRouter
from gpsd_server.core.engine import Engine
from gpsd_server.directory import VehicleDirectory
from gpsd_server.errors import DataError, GpsdError
from gpsd_server.gateway.commands import TerminalCommands
from gpsd_server.gateway.health import TerminalHealth, TerminalRegistry
from gpsd_server.gateway.tcp import Jt808Gateway
from gpsd_server.ingest import MqttIngest
from gpsd_server.ledger import AlertLedger
from gpsd_server.pipeline import Pipeline, Received
from gpsd_server.retention import run_retention
from gpsd_server.settings import Config
from gpsd_server.sinks.hub import LiveHub
from gpsd_server.status import Status
from gpsd_server.store import vehicles
from gpsd_server.store.batch import MileageRule
from gpsd_server.store.db import DB_ERRORS, Database, first_line
from gpsd_server.store.schema import SchemaInfo

log = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)  # see run()


class StartupError(GpsdError):
    """The server cannot start as configured (the message says why)."""


def _settle_memory() -> None:
    """The city, its geometry and the restored state live as long as the
    process: out of the collector's sight, and collections made rarer
    (measured: tools/bench_e2e.py reports gc_s per fix)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class _Uvicorn(uvicorn.Server):
    """Uvicorn without its own signal handling: the server owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: the one wall clock of the batch cycle, the rule tick and
        12319 cases (tests drive it)."""
        self.cfg = cfg
        c = cfg
        self.db = Database(c.database)
        self.directory = VehicleDirectory()
        self.engine = Engine(settings=c.rules, filter_settings=c.filters, tz=c.city.timezone)
        self.ledger = AlertLedger()
        self.writer = WriterSwitch(
            c.database, spool_path=spool_path(c), timezone=c.city.timezone,
            mileage=MileageRule(c.rules.moving_kmh, c.history.gap_s),
        )  # fmt: skip
        self.hub = LiveHub(
            max_clients=c.http.ws_max_clients, send_queue=c.http.ws_send_queue, moving_kmh=c.rules.moving_kmh,
            flush_ms=c.http.ws_flush_ms,
        )  # fmt: skip
        router = TopicRouter(
            native=c.mqtt.topic_prefix.rstrip("/"),
            jt808=c.jt808.topic_prefix,
            owntracks=c.owntracks.topic_prefix if c.owntracks.enabled else None,
        )
        self.decoder = Decoder(
            router, c.ingest, jt808_auto_register=c.jt808.auto_register,
            owntracks_max_accuracy_m=c.owntracks.max_accuracy_m,
        )  # fmt: skip
        self.pipeline = Pipeline(
            decoder=self.decoder, engine=self.engine, ledger=self.ledger, directory=self.directory,
            writer=self.writer, hub=self.hub, dead_letter_topic=c.mqtt.dead_letter_topic,
            reject_log_interval_s=c.ingest.reject_log_interval_s, clock=clock,
        )  # fmt: skip
        self.ingest = MqttIngest(settings=c.mqtt, cycle=c.ingest, topics=router.subscriptions(), handler=self._handle)
        self.pipeline.dead_letter = self.ingest.publish
        self.terminals = TerminalRegistry(auto_register=c.jt808.auto_register)
        self.health = TerminalHealth(self.terminals)
        self.gateway = (
            Jt808Gateway(self._gateway_publish, c.jt808, registry=self.terminals, health=self.health)
            if c.jt808.enabled
            else None
        )
        self.commands = TerminalCommands(
            db=self.db, settings=c.jt808, registry=self.terminals, health=self.health, gateway=self.gateway,
            publish=self._gateway_publish if c.jt808.downlink_mqtt else None,
        )  # fmt: skip
        if self.gateway is not None:
            self.gateway.on_ack, self.gateway.on_disconnect = self.commands.acked, self.commands.disconnected
            self.commands.counters = self.gateway.counters  # one set of counters on /metrics
        self.city = CityKeeper(
            CityFolder(resolve(c, c.geofences.dir)),
            self.engine.build_geometry,
            on_swap=[self._use_city],
            after_swap=self._sync_registry,
            budget=VertexBudget(c.geofences.max_feature_vertices, c.geofences.max_city_vertices),
        )
        # 12319 cases: the pipeline feeds them fixes and ticks, they raise alerts through it.
        self.cases = CaseDesk(
            db=self.db, settings=c.cases, dispatch=c.dispatch, timezone=c.city.timezone,
            moving_kmh=c.rules.moving_kmh, city=self.city, live=self.hub, directory=self.directory, clock=clock,
        )  # fmt: skip
        self.pipeline.cases = self.cases
        self.cases.raise_events, self.cases.wake_commands = self.pipeline.raise_events, self.commands.wake
        started_at = time.time()
        self.start = DatabaseStart(
            db=self.db, settings=c.database, writers=self.writer, engine=self.engine, ledger=self.ledger,
            hub=self.hub, directory=self.directory, sync_registry=lambda: self._sync_registry(self.city.current),
            on_schema=self._use_schema, started_at=started_at, on_restored=_settle_memory,
            also_restore=[self.cases.restore],
        )  # fmt: skip
        self.tokens = TokenStore(
            self.db, check_s=c.http.token_check_s,
            cache_path=state_path(c, "tokens", f"{c.mqtt.client_id.replace('/', '_')}.json"),
        )  # fmt: skip
        self.guard = ConnectionGuard(
            limit=c.http.limit_concurrency, header_timeout_s=c.http.header_timeout_s,
            log_interval_s=c.http.refused_log_interval_s,
        )  # fmt: skip
        self.status = Status(
            self.pipeline, self.writer, self.hub, self.ledger, self.ingest, self.engine.filter_counts,
            self.gateway or self.commands, started_at=started_at, http=self.guard, tokens=self.tokens,
        )  # fmt: skip
        self._metrics = metrics.registry(self.status)
        services = ApiServices(
            config=c, db=self.db, tokens=self.tokens, directory=self.directory, city=self.city,
            live=self.hub, presence=self.engine, status=self, cases=self.cases,
        )  # fmt: skip
        self.app = create_app(services)
        self.http_port: int | None = None

    # -- what the API asks of the server (api.deps.ServerStatus) -------------

    @property
    def mqtt_connected(self) -> bool:
        return self.ingest.is_connected

    @property
    def timescaledb(self) -> bool:
        return self.status.timescaledb

    def stats(self) -> dict[str, object]:
        return self.status.stats()

    def metrics(self) -> CollectorRegistry:
        return self._metrics

    # -- wiring callbacks ----------------------------------------------------

    def _use_city(self, data: CityData) -> None:
        self.engine.reload(data.city, data.geometry)
        self.decoder.use_city(data.city)
        self.directory.use_city(data.city)
        self.ledger.places = data.places
        self.terminals.use_city(data.city)

    def _use_schema(self, info: SchemaInfo) -> None:
        self.status.timescaledb = info.timescaledb

    async def _sync_registry(self, data: CityData) -> None:
        if not self.db.ready:
            return  # the start-up syncs once the database answers
        try:
            # A connection of its own: rare, and not held up by the pool's reconnect backoff after an outage.
            async with await self.db.direct() as conn:
                await vehicles.sync_registry(conn, (data.city.vehicles or {}).values())
        except (psycopg.Error, *DB_ERRORS) as exc:  # the city is in force anyway; the table catches up later
            log.warning("vehicle registry not synced to the database (%s)", first_line(exc))

    async def _handle(self, batch: Sequence[Received]) -> Awaitable[None]:
        """Ingest's handler: the pipeline, once the start-up lets fixes in."""
        self.status.intake.received()
        self.commands.observe(batch)  # terminals seen through EMQX, answers to commands
        if not self.start.intake_open.is_set():
            await self.start.intake_open.wait()
        return await self.pipeline.handle(batch)

    async def _gateway_publish(self, topic: str, payload: bytes) -> None:
        await self.ingest.publish(topic, payload, qos=1, must=True)

    async def _tick(self) -> None:
        """Time-driven rules (offline) once a second."""
        while True:
            await asyncio.sleep(1.0)
            if self.start.intake_open.is_set():
                await self.pipeline.tick()

    async def _retention(self) -> None:
        await self.start.done.wait()
        await run_retention(self.db, self.cfg.history, lambda: self.status.timescaledb)

    # -- running ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.status.gc_clock.install()
        http = self.cfg.http
        ensure_descriptors(http.limit_concurrency, extra=self.cfg.database.pool_max_size)
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
        http_protocol, ws_protocol = protocol_classes(self.guard)
        web = _Uvicorn(
            uvicorn.Config(
                GuardMiddleware(self.app, self.guard), host=http.host, port=http.port, http=http_protocol,
                ws=ws_protocol, lifespan="off", log_level="warning", access_log=False, ws_max_size=1024 * 1024,
                ws_per_message_deflate=http.ws_compression,
                # The guard refuses connections past the limit first (counted); uvicorn's own
                # limit, one higher, is only a backstop.
                limit_concurrency=http.limit_concurrency + 1, timeout_keep_alive=http.timeout_keep_alive_s,
                backlog=http.backlog, timeout_graceful_shutdown=max(1, round(http.shutdown_timeout_s)),
            )
        )  # fmt: skip
        async with asyncio.TaskGroup() as tg:
            probe = tg.create_task(self.db.probe_forever(), name="database-probe")
            bringup = tg.create_task(self.start.run(tg), name="database-start")
            serving = tg.create_task(web.serve(), name="http")
            intake = [
                tg.create_task(self.ingest.run(), name="mqtt-ingest"),
                tg.create_task(self._tick(), name="rule-tick"),
                tg.create_task(self.commands.run(), name="terminal-commands"),
                tg.create_task(self.cases.run(), name="cases"),
                tg.create_task(self.status.log_throughput(self.cfg.ingest.stats_log_interval_s), name="stats-log"),
                tg.create_task(self._retention(), name="retention"),
                tg.create_task(self.tokens.check_forever(), name="token-check"),
            ]
            if self.gateway is not None:
                j = self.cfg.jt808
                intake.append(tg.create_task(self.gateway.serve(j.host, j.port), name="jt808-gateway"))
            while not web.started:
                if serving.done():
                    raise RuntimeError(f"HTTP server on {http.host}:{http.port} did not start")
                await asyncio.sleep(0.02)
            self.http_port = web.servers[0].sockets[0].getsockname()[1] if web.servers else http.port
            log.info("HTTP on http://%s:%d/ (live: /ws/live, API docs: /docs)", http.host, self.http_port)
            if ready is not None:
                await self.start.settled.wait()
                ready.set()
            await stop.wait()
            log.info("shutting down: stopping intake, flushing %d queued fixes", self.writer.queued_rows)
            for task in [*intake, bringup]:
                task.cancel()
            await self.writer.close()
            web.should_exit = True
            probe.cancel()
        await self.db.close()
        self.status.gc_clock.uninstall()
        log.info("stopped; %d fixes stored this run", self.writer.stats.rows_inserted)
