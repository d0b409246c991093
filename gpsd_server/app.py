"""Wiring: build the components from the config, run them as named tasks,
shut down cleanly (stop intake, flush the writer, close connections)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import uvicorn
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from gpsd_server import citydata
from gpsd_server.api.http import create_app
from gpsd_server.config import Config, resolve, rule_settings
from gpsd_server.core.decode import DecodeLimits
from gpsd_server.core.engine import Engine
from gpsd_server.errors import DataError
from gpsd_server.ingest import MqttIngest, jittered
from gpsd_server.model import Fix
from gpsd_server.pipeline import Pipeline, TerminalTopics, VehicleInfo
from gpsd_server.retention import run_retention
from gpsd_server.sinks.live import LiveHub, Position
from gpsd_server.store import queries
from gpsd_server.store.schema import migrate
from gpsd_server.store.writer import TrackWriter

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """Uvicorn without its own signal handling: the server owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        db = cfg.database
        self.writer = TrackWriter(
            dsn=db.dsn,
            batch_max_rows=db.batch_max_rows,
            flush_interval_s=db.flush_interval_ms / 1000,
            queue_max_rows=db.queue_max_rows,
            retry_min_s=db.retry_min_s,
            retry_max_s=db.retry_max_s,
            connect_timeout_s=db.connect_timeout_s,
            # One spool per MQTT session: its data is acknowledged on that session.
            spool_path=resolve(cfg, db.spool_path)
            if db.spool_path
            else resolve(cfg, ".state") / "spool" / f"{cfg.mqtt.client_id.replace('/', '_')}.spool",
            spool_max_bytes=db.spool_max_mb * 1024 * 1024,
            spool_fsync_interval_s=db.spool_fsync_ms / 1000,
            write_timeout_s=db.write_timeout_s,
            shutdown_timeout_s=db.shutdown_timeout_s,
        )
        self.hub = LiveHub(max_clients=cfg.http.ws_max_clients, send_queue=cfg.http.ws_send_queue)
        self.city = citydata.empty()
        self.city_error: str | None = None
        self.engine = Engine(settings=rule_settings(cfg), tz=cfg.city.timezone)
        ing = cfg.ingest
        self.pipeline = Pipeline(
            topic_prefix=cfg.mqtt.topic_prefix,
            limits=DecodeLimits(
                max_payload_bytes=ing.max_payload_bytes,
                max_batch_items=ing.max_batch_items,
                max_future_s=ing.max_future_s,
                max_age_s=ing.max_age_days * 86400,
            ),
            engine=self.engine,
            writer=self.writer,
            hub=self.hub,
            dead_letter_topic=cfg.mqtt.dead_letter_topic,
            reject_log_interval_s=ing.reject_log_interval_s,
            terminals=TerminalTopics(
                jt808_prefix=cfg.jt808.topic_prefix,
                jt808_auto_register=cfg.jt808.auto_register,
                owntracks_prefix=cfg.owntracks.topic_prefix if cfg.owntracks.enabled else None,
                owntracks_max_accuracy_m=cfg.owntracks.max_accuracy_m,
            ),
        )
        self.ingest = MqttIngest(
            settings=cfg.mqtt,
            topics=self.pipeline.subscriptions(),
            handler=self.pipeline.handle,
            cycle_max_messages=ing.cycle_max_messages,
            cycle_max_bytes=ing.cycle_max_bytes,
            receive_maximum=cfg.mqtt.receive_maximum,
        )
        self.pipeline.dead_letter = self.ingest.publish
        self.pool = AsyncConnectionPool(
            db.dsn, min_size=1, max_size=8, open=False, kwargs={"application_name": "gpsd-api"}
        )
        self.timescaledb = False
        self.started_at = time.time()
        self.metrics_registry = CollectorRegistry()
        self.metrics_registry.register(_Metrics(self))
        self.app = create_app(self)
        self.http_port: int | None = None
        self.gateway: Any = None

    def load_city(self) -> citydata.CityData:
        """(Re)load geofences and vehicles; on error the previous set stays."""
        folder = resolve(self.cfg, self.cfg.geofences.dir)
        try:
            data = citydata.load_dir(folder)
        except DataError as exc:
            self.city_error = str(exc)
            log.error("geofences not loaded, keeping the previous set: %s", exc)
            raise
        self.city, self.city_error = data, None
        self.engine.reload(data.city)
        # The city's many long-lived objects need not be scanned by every
        # garbage collection (measured: ~20% of engine time without this).
        gc.collect()
        gc.freeze()
        self.pipeline.use_city(data.city, data.place_names())
        c = data.city
        log.info(
            "city loaded from %s: %d zones, %d routes, %d markers, %d vehicles",
            folder, len(c.zones), len(c.routes), len(c.markers), len(c.vehicles or {}),
        )  # fmt: skip
        return data

    async def sync_registry(self) -> None:
        """Plates, classes and companies of the registry into ``vehicles``."""
        vehicles = list((self.city.city.vehicles or {}).values())
        if not vehicles:
            return
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO vehicles (id, plate, class, company, terminal) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET plate = excluded.plate, class = excluded.class,"
                " company = excluded.company, terminal = excluded.terminal, updated_at = now()",
                [(v.id, v.plate or None, v.vehicle_class, v.company or None, v.terminal) for v in vehicles],
            )

    def city_centre(self) -> tuple[float, float] | None:
        c = self.city.city
        geoms = [z.geometry for z in c.zones if z.kind in ("area", "district")] or [z.geometry for z in c.zones]
        if not geoms:
            return None
        xs0, ys0, xs1, ys1 = zip(*(g.bounds for g in geoms), strict=True)
        return ((min(xs0) + max(xs1)) / 2, (min(ys0) + max(ys1)) / 2)

    @property
    def mqtt_connected(self) -> bool:
        return self.ingest.connected.is_set()

    async def database_ok(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - health reports any failure as down
            return False

    def stats(self) -> dict[str, Any]:
        w = self.writer.stats
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "mqtt_connected": self.mqtt_connected,
            "messages_received": self.ingest.messages_in,
            "fixes_accepted": self.pipeline.fixes_accepted,
            "fixes_late": self.pipeline.fixes_late,
            "rejected": dict(sorted(self.pipeline.rejects.total.items())),
            "db_queue_rows": self.writer.queued_rows,
            "db_rows_inserted": w.rows_inserted,
            "db_duplicates": w.duplicates,
            "db_write_failures": w.failures,
            "ws_clients": self.hub.client_count,
            "timescaledb": self.timescaledb,
        }

    async def _prepare_database(self) -> None:
        delay = self.cfg.database.retry_min_s
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.cfg.database.dsn, connect_timeout=int(self.cfg.database.connect_timeout_s)
                ) as conn:
                    info = await migrate(conn, chunk_interval=self.cfg.database.chunk_interval)
                    self.timescaledb = info.timescaledb
                    await self._load_state(conn)
                return
            except psycopg.OperationalError as exc:
                wait = jittered(delay)
                log.warning("database unavailable (%s); retrying in %.1f s", str(exc).strip().splitlines()[0], wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.cfg.database.retry_max_s)

    async def _load_state(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """After a restart: last positions, and rule state from the last fix
        and the alerts still open, so nothing is raised twice."""
        rows = await queries.last_positions(conn)
        cur = await conn.execute("SELECT id, vehicle_id, key FROM alerts WHERE ended_ts IS NULL")
        open_keys: dict[str, list[str]] = {}
        for alert_id, vehicle_id, key in await cur.fetchall():
            open_keys.setdefault(vehicle_id, []).append(key)
            self.pipeline.open_alerts[(vehicle_id, key)] = str(alert_id)
        for r in rows:
            if r.vehicle_id not in self.pipeline.vehicles:
                self.pipeline.vehicles[r.vehicle_id] = VehicleInfo(r.vehicle_class, r.plate, r.company)
            ts = r.ts.timestamp()
            last = Fix(r.vehicle_id, ts, r.lon, r.lat, speed_kmh=r.speed_kmh, heading=r.heading, alarm=r.alarm)
            self.engine.restore(r.vehicle_id, last, open_keys.get(r.vehicle_id, ()))
            self.hub.positions[r.vehicle_id] = Position(
                r.vehicle_id, ts, r.lon, r.lat, r.speed_kmh, r.heading, r.vehicle_class, r.plate, r.alarm
            )
        log.info("restored %d vehicles and %d open alerts from the database", len(rows), len(self.pipeline.open_alerts))

    async def _log_stats(self) -> None:
        interval = self.cfg.ingest.stats_log_interval_s
        last_n, last_t = 0, time.monotonic()
        while True:
            await asyncio.sleep(interval)
            n, t = self.pipeline.fixes_accepted, time.monotonic()
            w = self.writer.stats
            log.info(
                "ingest: %d fixes in %.0f s (%.0f/s), rejected %d, late %d, db queue %d, stored %d (dups %d), "
                "ws clients %d",
                n - last_n, t - last_t, (n - last_n) / max(t - last_t, 1e-9),
                sum(self.pipeline.rejects.total.values()), self.pipeline.fixes_late,
                self.writer.queued_rows, w.rows_inserted, w.duplicates, self.hub.client_count,
            )  # fmt: skip
            last_n, last_t = n, t

    async def _tick(self) -> None:
        """Time-driven rules (offline) once a second."""
        while True:
            await asyncio.sleep(1.0)
            await self.pipeline.tick()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        with contextlib.suppress(DataError):  # logged; runs without geofences until a valid reload
            self.load_city()
        await self._prepare_database()
        await self.pool.open(wait=False)
        await self.sync_registry()
        http = self.cfg.http
        web = _Uvicorn(
            uvicorn.Config(
                self.app,
                host=http.host,
                port=http.port,
                ws="websockets-sansio",
                lifespan="off",
                log_level="warning",
                access_log=False,
                ws_max_size=1024 * 1024,
            )
        )
        tasks = [
            asyncio.create_task(self.writer.run(), name="track-writer"),
            asyncio.create_task(self.ingest.run(), name="mqtt-ingest"),
            asyncio.create_task(web.serve(), name="http"),
            asyncio.create_task(self._log_stats(), name="stats-log"),
            asyncio.create_task(self._tick(), name="rule-tick"),
        ]
        tasks.append(asyncio.create_task(run_retention(self), name="retention"))
        if self.cfg.jt808.enabled:
            tasks.append(asyncio.create_task(self._run_gateway(), name="jt808-gateway"))
        while not web.started:
            if tasks[2].done():
                await tasks[2]  # raises why the HTTP server could not start
                raise RuntimeError(f"HTTP server on {http.host}:{http.port} did not start")
            await asyncio.sleep(0.02)
        self.http_port = web.servers[0].sockets[0].getsockname()[1] if web.servers else http.port
        log.info("HTTP on http://%s:%d/ (live: /ws/live, API docs: /docs)", http.host, self.http_port)
        if ready is not None:
            ready.set()
        stop_wait = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stop_wait and t.exception() is not None:
                log.error("task %s failed: %r", t.get_name(), t.exception())
        log.info("shutting down: stopping intake, flushing %d queued fixes", self.writer.queued_rows)
        for t in tasks[1:]:
            if t is not tasks[2]:
                t.cancel()
        await self.writer.close()
        await asyncio.gather(tasks[0], return_exceptions=True)
        web.should_exit = True
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        stop_wait.cancel()
        await self.pool.close()
        log.info("stopped; %d fixes stored this run", self.writer.stats.rows_inserted)

    async def _run_gateway(self) -> None:
        from gpsd_server.gateway.jt808_session import SessionSettings
        from gpsd_server.gateway.jt808_tcp import GatewaySettings, Jt808Gateway

        j = self.cfg.jt808
        settings = GatewaySettings(
            session=SessionSettings(
                auth_code=j.auth_code,
                require_auth=j.require_auth,
                max_frame_bytes=j.max_frame_bytes,
                max_bad_frames=j.max_bad_frames,
                topic_prefix=j.topic_prefix,
            ),
            idle_timeout_s=j.idle_timeout_s,
            max_connections=j.max_connections,
        )

        async def publish(topic: str, payload: bytes) -> None:
            await self.ingest.publish(topic, payload, qos=1, must=True)

        self.gateway = Jt808Gateway(publish, settings)
        await self.gateway.start(j.host, j.port)
        log.info("JT/T 808 gateway listening on %s:%d", j.host, self.gateway.port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.gateway.close()


class _Metrics(Collector):
    """Prometheus view of the server's counters, read at scrape time."""

    def __init__(self, server: Server) -> None:
        self._s = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._s
        yield CounterMetricFamily("gpsd_mqtt_messages", "MQTT messages received", value=s.ingest.messages_in)
        yield CounterMetricFamily(
            "gpsd_fixes_accepted", "Fixes accepted by the decoders", value=s.pipeline.fixes_accepted
        )
        yield CounterMetricFamily("gpsd_fixes_late", "Fixes older than the vehicle's last", value=s.pipeline.fixes_late)
        rej = CounterMetricFamily("gpsd_rejected", "Rejected payloads or batch items", labels=["reason"])
        for reason, n in sorted(s.pipeline.rejects.total.items()):
            rej.add_metric([reason], n)
        yield rej
        w = s.writer.stats
        yield GaugeMetricFamily("gpsd_db_queue_rows", "Fixes waiting for the database", value=s.writer.queued_rows)
        yield CounterMetricFamily("gpsd_db_rows_inserted", "New rows in fixes", value=w.rows_inserted)
        yield CounterMetricFamily("gpsd_db_duplicates", "Repeated fixes stored once", value=w.duplicates)
        yield CounterMetricFamily("gpsd_db_write_failures", "Failed write attempts (retried)", value=w.failures)
        yield GaugeMetricFamily("gpsd_db_last_batch_seconds", "Duration of the last batch write", value=w.last_batch_s)
        wr = s.writer
        yield GaugeMetricFamily(
            "gpsd_db_available", "0 while the writer spools (database away)", value=int(wr.database_available)
        )
        yield CounterMetricFamily("gpsd_db_outages", "Times the writer switched to the spool", value=w.outages)
        yield GaugeMetricFamily("gpsd_spool_bytes", "Bytes in the disk spool", value=wr.spool_bytes)
        yield GaugeMetricFamily(
            "gpsd_spool_backlog_bytes", "Spooled bytes not yet replayed", value=wr.spool_backlog_bytes
        )
        yield GaugeMetricFamily("gpsd_spool_max_bytes", "Size limit of the disk spool", value=wr.spool_max_bytes)
        yield GaugeMetricFamily(
            "gpsd_spool_full", "1 while the spool is full (intake held back)", value=int(wr.spool_full)
        )
        yield CounterMetricFamily("gpsd_spool_full_events", "Times the spool was found full", value=w.spool_full_events)
        yield CounterMetricFamily("gpsd_spool_rows", "Fixes made durable in the spool", value=w.rows_spooled)
        yield CounterMetricFamily("gpsd_spool_replayed_rows", "Fixes replayed from the spool", value=w.rows_replayed)
        yield GaugeMetricFamily(
            "gpsd_flow_control_active", "1 while intake waits for the writer queue", value=int(wr.flow_control_active)
        )
        yield GaugeMetricFamily("gpsd_ws_clients", "Connected websocket clients", value=s.hub.client_count)
        yield CounterMetricFamily(
            "gpsd_ws_clients_dropped", "Slow websocket clients dropped", value=s.hub.clients_dropped
        )
        yield GaugeMetricFamily("gpsd_mqtt_connected", "1 when connected to the broker", value=int(s.mqtt_connected))
        raised = CounterMetricFamily("gpsd_alerts", "Alerts raised by kind", labels=["kind"])
        for kind, n in sorted(s.pipeline.alerts_raised.items()):
            raised.add_metric([kind], n)
        yield raised
        if s.gateway is not None:
            gw = CounterMetricFamily("gpsd_jt808_gateway_events", "JT/T 808 gateway outcomes", labels=["reason"])
            for reason, n in sorted(s.gateway.counters.items()):
                gw.add_metric([reason], n)
            yield gw
