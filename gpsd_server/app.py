"""Wiring: build the components from the config, run them as named tasks,
shut down cleanly (stop intake, flush the writer, close connections)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import uvicorn
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from gpsd_server.api.http import create_app
from gpsd_server.config import Config
from gpsd_server.core.decode import DecodeLimits
from gpsd_server.core.engine import Engine
from gpsd_server.ingest import MqttIngest, jittered
from gpsd_server.pipeline import Pipeline, VehicleInfo
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
        )
        self.hub = LiveHub(max_clients=cfg.http.ws_max_clients, send_queue=cfg.http.ws_send_queue)
        ing = cfg.ingest
        self.pipeline = Pipeline(
            topic_prefix=cfg.mqtt.topic_prefix,
            limits=DecodeLimits(
                max_payload_bytes=ing.max_payload_bytes,
                max_batch_items=ing.max_batch_items,
                max_future_s=ing.max_future_s,
                max_age_s=ing.max_age_days * 86400,
            ),
            engine=Engine(),
            writer=self.writer,
            hub=self.hub,
            dead_letter_topic=cfg.mqtt.dead_letter_topic,
            reject_log_interval_s=ing.reject_log_interval_s,
        )
        self.ingest = MqttIngest(
            settings=cfg.mqtt,
            topics=self.pipeline.subscriptions(),
            handler=self.pipeline.handle,
            cycle_max_messages=ing.cycle_max_messages,
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
        """Restore last positions and per-vehicle fix time after a restart."""
        rows = await queries.last_positions(conn)
        for r in rows:
            self.pipeline.vehicles[r.vehicle_id] = VehicleInfo(r.vehicle_class, r.plate)
            ts = r.ts.timestamp()
            self.pipeline.engine.seed(r.vehicle_id, ts)
            self.hub.positions[r.vehicle_id] = Position(
                r.vehicle_id, ts, r.lon, r.lat, r.speed_kmh, r.heading, r.vehicle_class, r.plate, r.alarm
            )
        log.info("restored %d vehicles from the database", len(rows))

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

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await self._prepare_database()
        await self.pool.open(wait=False)
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
        ]
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
        tasks[1].cancel()
        tasks[3].cancel()
        await self.writer.close()
        await asyncio.gather(tasks[0], return_exceptions=True)
        web.should_exit = True
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        stop_wait.cancel()
        await self.pool.close()
        log.info("stopped; %d fixes stored this run", self.writer.stats.rows_inserted)


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
        yield GaugeMetricFamily("gpsd_ws_clients", "Connected websocket clients", value=s.hub.client_count)
        yield CounterMetricFamily(
            "gpsd_ws_clients_dropped", "Slow websocket clients dropped", value=s.hub.clients_dropped
        )
        yield GaugeMetricFamily("gpsd_mqtt_connected", "1 when connected to the broker", value=int(s.mqtt_connected))
