"""What the server reports about itself: counters for ``/api/stats``, the
periodic throughput log line, and health. Reads the components' public
counters; changes nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpsd_server.core.filters import Counts
from gpsd_server.ledger import AlertLedger
from gpsd_server.pipeline import Pipeline
from gpsd_server.sinks.hub import LiveHub
from gpsd_server.sinks.tracks.writer import WriterStats

log = logging.getLogger(__name__)


class Broker(Protocol):
    @property
    def is_connected(self) -> bool: ...
    @property
    def messages_in(self) -> int: ...


class Gateway(Protocol):
    @property
    def counters(self) -> Any: ...


class Writer(Protocol):
    """The track writer as the counters see it."""

    @property
    def stats(self) -> WriterStats: ...
    @property
    def queued_rows(self) -> int: ...
    @property
    def spool_bytes(self) -> int: ...
    @property
    def spool_backlog_bytes(self) -> int: ...
    @property
    def spool_max_bytes(self) -> int: ...
    @property
    def spool_full(self) -> bool: ...
    @property
    def database_available(self) -> bool: ...
    @property
    def flow_control_active(self) -> bool: ...
    @property
    def thread_id(self) -> int | None: ...


class HttpGuard(Protocol):
    @property
    def open_connections(self) -> int: ...
    @property
    def refused(self) -> Mapping[str, int]: ...


class Tokens(Protocol):
    @property
    def revoked_closed(self) -> int: ...


class GcClock:
    """Time spent in the garbage collector, from ``gc.callbacks`` (two calls
    per collection, nothing per object): how much of a fix's CPU is GC."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


@dataclass
class Intake:
    """When ingest handed batches to the pipeline (wall clock), for benchmarks
    that time a drain from the server's own first message to its last commit."""

    first_message_at: float = 0.0
    last_message_at: float = 0.0
    batches: int = 0

    def received(self) -> None:
        now = time.time()
        if not self.first_message_at:
            self.first_message_at = now
        self.last_message_at = now
        self.batches += 1


@dataclass
class Status:
    pipeline: Pipeline
    writer: Writer
    hub: LiveHub
    ledger: AlertLedger
    broker: Broker
    filters: Counts
    gateway: Gateway | None = None
    timescaledb: bool = False
    started_at: float = 0.0
    http: HttpGuard | None = None
    tokens: Tokens | None = None
    intake: Intake = field(default_factory=Intake)
    gc_clock: GcClock = field(default_factory=GcClock)

    def stats(self) -> dict[str, Any]:
        w = self.writer.stats
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "mqtt_connected": self.broker.is_connected,
            "messages_received": self.broker.messages_in,
            "fixes_accepted": self.pipeline.fixes_accepted,
            "fixes_late": self.pipeline.fixes_late,
            "fixes_nofix": self.pipeline.fixes_nofix,
            "engine_errors": self.pipeline.engine_errors,
            "filtered": dict(sorted(self.filters.total.items())),
            "rejected": dict(sorted(self.pipeline.rejects.total.items())),
            "db_queue_rows": self.writer.queued_rows,
            "db_rows_inserted": w.rows_inserted,
            "db_duplicates": w.duplicates,
            "db_write_failures": w.failures,
            "db_write_refused": w.refused,
            "ws_clients": self.hub.client_count,
            "timescaledb": self.timescaledb,
            "http_connections": self.http.open_connections if self.http else 0,
            "http_refused": dict(sorted(self.http.refused.items())) if self.http else {},
            # For benchmarks: wall-clock stamps, the writer's thread, GC and fan-out work.
            "first_message_at": self.intake.first_message_at,
            "last_message_at": self.intake.last_message_at,
            "ingest_batches": self.intake.batches,
            "db_rows_copied": w.rows_copied,
            "db_batches": w.batches,
            "db_last_commit_at": w.last_commit_at,
            "writer_thread_id": self.writer.thread_id,
            "gc_s": round(self.gc_clock.seconds, 6),
            "gc_collections": list(self.gc_clock.collections),
            "ws_messages_sent": self.hub.messages_sent,
            "ws_frames_built": self.hub.frames_built,
            "ws_positions_encoded": self.hub.positions_encoded,
            "ws_positions_conflated": self.hub.positions_conflated,
            "ws_clients_dropped": self.hub.clients_dropped,
        }

    async def log_throughput(self, interval_s: float) -> None:
        """A throughput line every interval, until cancelled."""
        last_n, last_t = 0, time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            n, t = self.pipeline.fixes_accepted, time.monotonic()
            w = self.writer.stats
            filtered = self.filters.total
            log.info(
                # The first figures are this interval's; the rest count since the start.
                "ingest: %d fixes in %.0f s (%.0f/s); since start: rejected %d, late %d, no fix %d, filtered %s, "
                "stored %d (dups %d); now: db queue %d, ws clients %d",
                n - last_n, t - last_t, (n - last_n) / max(t - last_t, 1e-9),
                sum(self.pipeline.rejects.total.values()), self.pipeline.fixes_late, self.pipeline.fixes_nofix,
                ", ".join(f"{k} {v}" for k, v in sorted(filtered.items())) or "0",
                w.rows_inserted, w.duplicates, self.writer.queued_rows, self.hub.client_count,
            )  # fmt: skip
            last_n, last_t = n, t
