"""One batch cycle: decode -> engine -> writer + live hub, with rejections
counted, logged once per reason per interval and sent to the dead letters.

This is the seam between the pure core and the drivers: it owns the clock
(``now`` is read once per cycle and passed down) and nothing in here blocks
except ``writer.put`` when the database queue is full (flow control).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from gpsd_server.core.city import City
from gpsd_server.core.decode import DecodeLimits, decode_native
from gpsd_server.core.decode_jt808 import decode_jt808, terminal_registry
from gpsd_server.core.decode_owntracks import decode_owntracks
from gpsd_server.core.engine import Engine
from gpsd_server.errors import DecodeError
from gpsd_server.ingest import Incoming
from gpsd_server.model import Event, Fix, FixFlag
from gpsd_server.sinks.live import LiveHub, Position, iso
from gpsd_server.store.writer import AlertRow, TrackWriter

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

PRESENCE_KIND = "zone"
_LATE = int(FixFlag.LATE)  # an int test: ``flags & FixFlag.LATE`` builds a Flag per fix
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
    company: str | None = None


@dataclass(frozen=True, slots=True)
class TerminalTopics:
    """Optional input paths besides the native one."""

    jt808_prefix: str | None = "jt808"
    jt808_auto_register: bool = False
    owntracks_prefix: str | None = "owntracks"
    owntracks_max_accuracy_m: float = 500.0


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
        terminals: TerminalTopics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prefix = topic_prefix.rstrip("/") + "/"
        self._terminals = terminals or TerminalTopics()
        self._jt808_registry: dict[str, str] = {}
        self._owntracks_registry: dict[str, str] = {}
        self._limits = limits
        self.engine = engine
        self._writer = writer
        self._hub = hub
        self._dead_letter_topic = dead_letter_topic.rstrip("/")
        self.dead_letter: DeadLetter | None = None
        self.rejects = RejectLog(reject_log_interval_s)
        self.vehicles: dict[str, VehicleInfo] = {}
        self.place_names: dict[str, str] = {}
        self._clock = clock
        # (vehicle, key) -> id of the alert whose condition still lasts
        self.open_alerts: dict[tuple[str, str], str] = {}
        self.alerts_raised: Counter[str] = Counter()
        self.fixes_accepted = 0
        self.fixes_late = 0

    def place_name(self, place_id: str | None) -> str | None:
        """The name of a zone or route, for alert messages."""
        if place_id is None:
            return None
        return self.place_names.get(place_id, place_id)

    def use_city(self, city: City, place_names: dict[str, str]) -> None:
        """Vehicle registry, terminal mappings and names from a (re)loaded city."""
        for v in (city.vehicles or {}).values():
            self.vehicles[v.id] = VehicleInfo(v.vehicle_class, v.plate or None, v.company or None)
        vehicles = list((city.vehicles or {}).values())
        self._jt808_registry = terminal_registry((v.terminal, v.id) for v in vehicles if v.terminal)
        self._owntracks_registry = {v.owntracks: v.id for v in vehicles if v.owntracks}
        self.place_names = place_names

    def subscriptions(self) -> list[str]:
        topics = [f"{self._prefix}+/fix"]
        if self._terminals.jt808_prefix:
            topics.append(f"{self._terminals.jt808_prefix}/+/+/up")
        if self._terminals.owntracks_prefix:
            topics.append(f"{self._terminals.owntracks_prefix}/+/+")
        return topics

    def decode(self, msg: Incoming, now: float) -> list[Fix | DecodeError]:
        topic = msg.topic
        if topic.startswith(self._prefix) and topic.endswith("/fix"):
            vehicle_id = topic[len(self._prefix) : -len("/fix")]
            return decode_native(vehicle_id, msg.payload, now=now, limits=self._limits)
        t = self._terminals
        if t.jt808_prefix and topic.startswith(t.jt808_prefix + "/") and topic.endswith("/up"):
            parts = topic[len(t.jt808_prefix) + 1 : -len("/up")].split("/")
            if len(parts) == 2 and parts[1]:
                return decode_jt808(
                    parts[1],
                    msg.payload,
                    now=now,
                    limits=self._limits,
                    terminals=self._jt808_registry,
                    auto_register=t.jt808_auto_register,
                )
        if t.owntracks_prefix and topic.startswith(t.owntracks_prefix + "/"):
            parts = topic[len(t.owntracks_prefix) + 1 :].split("/")
            if len(parts) == 2 and all(parts):
                return decode_owntracks(
                    "/".join(parts),
                    msg.payload,
                    now=now,
                    limits=self._limits,
                    devices=self._owntracks_registry,
                    max_accuracy_m=t.owntracks_max_accuracy_m,
                )
            return []  # OwnTracks event/info sub-topics: not positions
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
        alerts = self.alert_rows(result.events, now)
        durable = await self._writer.put(result.fixes, alerts)
        self.fixes_accepted += len(result.fixes)
        live = []
        for f in result.fixes:
            if f.flags & _LATE:
                self.fixes_late += 1
                continue
            info = self.vehicles.get(f.vehicle_id) or VehicleInfo()
            live.append(
                Position(
                    f.vehicle_id, f.ts, f.lon, f.lat, f.speed_kmh, f.heading, info.vehicle_class, info.plate, f.alarm
                )
            )
        self._hub.publish_positions(live)
        self._hub.publish_alerts(self.alert_message(a) for a in alerts)
        if dead and self.dead_letter is not None:
            for topic, payload in dead:
                await self.dead_letter(topic, payload)
        return durable

    async def tick(self) -> None:
        """Time-driven rules (offline): the driver calls this periodically."""
        now = self._clock()
        alerts = self.alert_rows(self.engine.tick(now), now)
        if alerts:
            await self._writer.put((), alerts)
            self._hub.publish_alerts(self.alert_message(a) for a in alerts)

    def alert_rows(self, events: Sequence[Event], now: float) -> list[AlertRow]:
        rows = []
        for e in events:
            k = (e.vehicle_id, e.key)
            if e.phase == "start":
                alert_id = str(uuid.uuid4())
                self.open_alerts[k] = alert_id
            elif e.phase == "end":
                alert_id = self.open_alerts.pop(k, "") or str(uuid.uuid4())
            else:
                alert_id = str(uuid.uuid4())
            if e.phase != "end":
                self.alerts_raised[e.kind] += 1
            rows.append(AlertRow(alert_id, e, now))
        return rows

    def alert_message(self, a: AlertRow) -> dict[str, object]:
        e = a.event
        info = self.vehicles.get(e.vehicle_id) or VehicleInfo()
        return {
            # Zone presence (enter/exit) is a fact for reports and the map, not
            # something for the alert desk: it travels as its own message type.
            "type": "zone" if e.kind == PRESENCE_KIND else "alert",
            "id": a.id,
            "kind": e.kind,
            "phase": e.phase,
            "severity": e.severity,
            "vehicle_id": e.vehicle_id,
            "plate": info.plate,
            "class": info.vehicle_class,
            "ts": iso(e.ts),
            "raised_at": iso(a.raised_at),
            "lon": e.lon,
            "lat": e.lat,
            "zone_id": e.zone_id,
            "route_id": e.route_id,
            "zone_name": self.place_name(e.zone_id or e.route_id),
            "details": e.details,
            "state": "open",
            "active": e.phase == "start",
        }

    def _dead_letter(self, msg: Incoming, err: DecodeError) -> tuple[str, bytes]:
        body = {
            "topic": msg.topic,
            "reason": err.reason,
            "detail": err.detail,
            "index": err.index,
            "payload": msg.payload[:4096].decode("utf-8", "replace"),
        }
        return f"{self._dead_letter_topic}/{err.reason}", _encoder.encode(body)
