"""One batch cycle: decode -> engine -> writer + live hub, with rejections
counted, logged once per reason per interval and sent to the dead letters.

This is the seam between the pure core and the drivers: it owns the clock
(``now`` is read once per cycle and passed down) and nothing in here blocks
except ``writer.put`` when the database queue is full (flow control).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from gpsd_server.core.decode import DecodeLimits, decode_native
from gpsd_server.core.engine import Engine
from gpsd_server.errors import DecodeError
from gpsd_server.ingest import Incoming
from gpsd_server.model import Fix, FixFlag
from gpsd_server.sinks.live import LiveHub, Position
from gpsd_server.store.writer import TrackWriter

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

DeadLetter = Callable[[str, bytes], Awaitable[None]]


@dataclass(slots=True)
class RejectLog:
    """Counts rejections by reason; logs each reason at most once per interval."""

    interval_s: float
    total: Counter[str] = field(default_factory=Counter)
    _pending: Counter[str] = field(default_factory=Counter)
    _example: dict[str, str] = field(default_factory=dict)
    _last_log: float = 0.0

    def record(self, reason: str, example: str) -> None:
        self.total[reason] += 1
        self._pending[reason] += 1
        self._example.setdefault(reason, example)

    def maybe_log(self, now: float) -> None:
        if not self._pending or now - self._last_log < self.interval_s:
            return
        for reason, n in sorted(self._pending.items()):
            log.warning("rejected %d item(s): %s (e.g. %s)", n, reason, self._example[reason])
        self._pending.clear()
        self._example.clear()
        self._last_log = now


@dataclass(slots=True)
class VehicleInfo:
    vehicle_class: str = "other"
    plate: str | None = None


class Pipeline:
    def __init__(
        self,
        *,
        topic_prefix: str,
        limits: DecodeLimits,
        engine: Engine,
        writer: TrackWriter,
        hub: LiveHub,
        dead_letter_topic: str,
        reject_log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prefix = topic_prefix.rstrip("/") + "/"
        self._limits = limits
        self.engine = engine
        self._writer = writer
        self._hub = hub
        self._dead_letter_topic = dead_letter_topic.rstrip("/")
        self.dead_letter: DeadLetter | None = None
        self.rejects = RejectLog(reject_log_interval_s)
        self.vehicles: dict[str, VehicleInfo] = {}
        self._clock = clock
        self.fixes_accepted = 0
        self.fixes_late = 0

    def subscriptions(self) -> list[str]:
        return [f"{self._prefix}+/fix"]

    def decode(self, msg: Incoming, now: float) -> list[Fix | DecodeError]:
        topic = msg.topic
        if topic.startswith(self._prefix) and topic.endswith("/fix"):
            vehicle_id = topic[len(self._prefix) : -len("/fix")]
            return decode_native(vehicle_id, msg.payload, now=now, limits=self._limits)
        return [DecodeError("unknown_topic", "no decoder for this topic")]

    async def handle(self, batch: Sequence[Incoming]) -> Awaitable[None]:
        now = self._clock()
        fixes: list[Fix] = []
        dead: list[tuple[str, bytes]] = []
        for msg in batch:
            for item in self.decode(msg, now):
                if isinstance(item, DecodeError):
                    self.rejects.record(item.reason, f"{msg.topic}: {item.detail}")
                    dead.append(self._dead_letter(msg, item))
                else:
                    fixes.append(item)
        self.rejects.maybe_log(now)
        result = self.engine.process(fixes, now)
        durable = await self._writer.put(result.fixes)
        self.fixes_accepted += len(result.fixes)
        live = []
        for f in result.fixes:
            if f.flags & FixFlag.LATE:
                self.fixes_late += 1
                continue
            info = self.vehicles.get(f.vehicle_id) or VehicleInfo()
            live.append(
                Position(
                    f.vehicle_id, f.ts, f.lon, f.lat, f.speed_kmh, f.heading, info.vehicle_class, info.plate, f.alarm
                )
            )
        self._hub.publish_positions(live)
        if dead and self.dead_letter is not None:
            for topic, payload in dead:
                await self.dead_letter(topic, payload)
        return durable

    def _dead_letter(self, msg: Incoming, err: DecodeError) -> tuple[str, bytes]:
        body = {
            "topic": msg.topic,
            "reason": err.reason,
            "detail": err.detail,
            "index": err.index,
            "payload": msg.payload[:4096].decode("utf-8", "replace"),
        }
        return f"{self._dead_letter_topic}/{err.reason}", _encoder.encode(body)
