"""What an API node (``gpsd-server api``) needs besides the api role: its
start-up against the shared database (schema, the last positions for the
snapshot, the registry) and its status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.registry import CollectorRegistry

from gpsd_server.backoff import Backoff
from gpsd_server.cluster.feed import HubListener
from gpsd_server.directory import VehicleDirectory, VehicleInfo
from gpsd_server.settings import DatabaseSettings
from gpsd_server.sinks.hub import LiveHub, LivePosition
from gpsd_server.store import vehicles
from gpsd_server.store.db import DB_ERRORS, Database, first_line
from gpsd_server.store.schema import SchemaInfo, migrate

log = logging.getLogger(__name__)


class ApiNodeStart:
    """Schema checked, the hub holds every vehicle's last stored position, the
    API may use the database; retried with backoff until the database answers."""

    def __init__(
        self, *, db: Database, settings: DatabaseSettings, hub: LiveHub, directory: VehicleDirectory,
        sync_registry: Callable[[], Awaitable[None]], on_schema: Callable[[SchemaInfo], None],
    ) -> None:  # fmt: skip
        self._db, self._settings, self._hub, self._directory = db, settings, hub, directory
        self._sync_registry, self._on_schema = sync_registry, on_schema
        self.done = self.settled = asyncio.Event()

    async def run(self, tg: asyncio.TaskGroup) -> None:
        backoff = Backoff(self._settings.retry_min_s, self._settings.retry_max_s)
        while True:
            try:
                async with await self._db.direct() as conn:
                    info = await migrate(conn, chunk_interval=self._settings.chunk_interval)
                    last = await vehicles.last_positions(conn)
                break
            except DB_ERRORS as exc:
                log.warning("database unavailable (%s); the API node retries", first_line(exc))
                await asyncio.sleep(backoff.next())
        self._on_schema(info)
        self._directory.learn(VehicleInfo(r.vehicle_id, r.vehicle_class, r.plate, r.company) for r in last)
        self._hub.restore(
            LivePosition(r.vehicle_id, r.ts.timestamp(), r.lon, r.lat, r.speed_kmh, r.heading, r.vehicle_class,
                         r.plate, r.alarm)
            for r in last
        )  # fmt: skip
        self._db.mark_ready()
        with contextlib.suppress(*DB_ERRORS):
            await self._sync_registry()
        self.done.set()


class NodeStatus:
    """An API node's answer to ``/healthz`` and ``/api/stats`` (api.deps.ServerStatus)."""

    def __init__(self, feed: HubListener, hub: LiveHub) -> None:
        self._feed, self._hub = feed, hub
        self._started = time.time()
        self._registry = CollectorRegistry()
        self.timescaledb = False

    @property
    def mqtt_connected(self) -> bool:
        return self._feed.connected.is_set()  # the broker, through which everything comes

    def stats(self) -> dict[str, Any]:
        return {
            "role": "api",
            "uptime_s": round(time.time() - self._started, 1),
            "mqtt_connected": self.mqtt_connected,
            "hub_frames_in": self._feed.frames_in,
            "hub_duplicates": self._feed.duplicates,
            "ws_clients": self._hub.client_count,
            "timescaledb": self.timescaledb,
        }

    def metrics(self) -> CollectorRegistry:
        return self._registry
