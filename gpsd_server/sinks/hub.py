"""The live hub: fan-out of positions and alerts to websocket clients.

Each message is encoded once and the same bytes are queued for every client
whose filter admits it; fan-out is the expensive part at scale, so nothing
per client is re-encoded. Every client has a bounded queue: a client that
cannot keep up is dropped (and told why) rather than growing server memory or
slowing the others.

The hub is fed through ``publish_positions`` / ``publish_alerts`` only (the
:class:`LiveSink` interface), so an API node can be fed from a broker instead
of the ingest loop, and it keeps every vehicle's last position for the
snapshot a client gets on connect and for 12319 dispatch.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from gpsd_server import wire

log = logging.getLogger(__name__)


class LivePosition(msgspec.Struct, frozen=True, gc=False):
    """What the hub knows about a vehicle's latest position."""

    vehicle_id: str
    ts: float
    lon: float
    lat: float
    speed_kmh: float | None
    heading: float | None
    vehicle_class: str = "other"
    plate: str | None = None
    alarm: int = 0

    def message(self, moving_kmh: float) -> wire.Position:
        return wire.Position.of(
            self.vehicle_id, self.ts, self.lon, self.lat, self.speed_kmh, self.heading,
            plate=self.plate, vehicle_class=self.vehicle_class, moving_kmh=moving_kmh,
        )  # fmt: skip


class LiveSink(Protocol):
    """What the pipeline (or a broker feed) hands live data to."""

    def publish_positions(self, positions: Iterable[LivePosition]) -> None: ...
    def publish_alerts(self, alerts: Iterable[wire.Alert]) -> None: ...


@dataclass(slots=True)
class Subscription:
    """A client's narrowing of what it receives; empty means everything."""

    bbox: tuple[float, float, float, float] | None = None
    classes: frozenset[str] = frozenset()
    vehicles: frozenset[str] = frozenset()

    def admits(self, vehicle_id: str, vehicle_class: str, lon: float, lat: float) -> bool:
        if self.vehicles and vehicle_id not in self.vehicles:
            return False
        if self.classes and vehicle_class not in self.classes:
            return False
        if self.bbox is not None:
            x0, y0, x1, y1 = self.bbox
            if not (x0 <= lon <= x1 and y0 <= lat <= y1):
                return False
        return True


class SubscriptionError(ValueError):
    """A client's subscribe message is malformed; the text names the field."""


def parse_subscription(msg: Any, *, max_vehicles: int = 10000) -> Subscription:
    if not isinstance(msg, dict):
        raise SubscriptionError("message must be an object")
    bbox = msg.get("bbox")
    if bbox is not None:
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
            or bbox[0] > bbox[2]
            or bbox[1] > bbox[3]
        ):
            raise SubscriptionError("bbox must be [min_lon, min_lat, max_lon, max_lat]")
        bbox = tuple(float(v) for v in bbox)
    classes = msg.get("classes") or []
    vehicles = msg.get("vehicles") or []
    for name, values in (("classes", classes), ("vehicles", vehicles)):
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SubscriptionError(f"{name} must be a list of strings")
    if len(vehicles) > max_vehicles:
        raise SubscriptionError(f"vehicles: at most {max_vehicles}")
    return Subscription(bbox=bbox, classes=frozenset(classes), vehicles=frozenset(vehicles))


@dataclass(eq=False)
class Client:
    queue: asyncio.Queue[bytes]
    subscription: Subscription = field(default_factory=Subscription)
    dropped: str | None = None  # why the hub gave up on this client
    cases: bool = True  # receives 12319 case messages (accounts that may see cases)


class LiveHub:
    def __init__(self, *, max_clients: int = 500, send_queue: int = 2000, moving_kmh: float = 5.0) -> None:
        self._max_clients = max_clients
        self._send_queue = send_queue
        self._moving_kmh = moving_kmh
        self._clients: set[Client] = set()
        self._positions: dict[str, LivePosition] = {}
        self.messages_sent = 0
        self.clients_dropped = 0

    @property
    def positions(self) -> Mapping[str, LivePosition]:
        """Every vehicle's last position (read-only)."""
        return self._positions

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def restore(self, positions: Iterable[LivePosition]) -> None:
        for p in positions:
            self._positions[p.vehicle_id] = p

    def add_client(self) -> Client | None:
        if len(self._clients) >= self._max_clients:
            return None
        client = Client(queue=asyncio.Queue(maxsize=self._send_queue))
        self._clients.add(client)
        return client

    def remove_client(self, client: Client) -> None:
        self._clients.discard(client)

    def snapshot(self, client: Client, limit: int) -> bytes:
        sub = client.subscription
        items = [
            p.message(self._moving_kmh)
            for p in self._positions.values()
            if sub.admits(p.vehicle_id, p.vehicle_class, p.lon, p.lat)
        ][:limit]
        return wire.encode(wire.Snapshot(vehicles=items))

    def _offer(self, client: Client, data: bytes) -> None:
        try:
            client.queue.put_nowait(data)
            self.messages_sent += 1
        except asyncio.QueueFull:
            client.dropped = "too slow: send queue full"
            self.clients_dropped += 1
            self._clients.discard(client)
            # Wake the sender so it can close the connection with the reason.
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait(b"")

    def reply(self, client: Client, data: bytes) -> None:
        """A message for one client only (errors, a new snapshot)."""
        if client in self._clients:
            self._offer(client, data)

    def publish_positions(self, positions: Iterable[LivePosition]) -> None:
        for p in positions:
            prev = self._positions.get(p.vehicle_id)
            if prev is not None and prev.ts > p.ts:
                continue
            self._positions[p.vehicle_id] = p
            if not self._clients:
                continue
            data = wire.encode(p.message(self._moving_kmh))
            for client in list(self._clients):
                if client.subscription.admits(p.vehicle_id, p.vehicle_class, p.lon, p.lat):
                    self._offer(client, data)

    def publish_alerts(self, alerts: Iterable[wire.Alert]) -> None:
        if not self._clients:
            return  # nobody to tell: the messages are not even encoded
        for alert in alerts:
            data = wire.encode(alert)
            vclass = alert.vehicle_class or "other"
            lon, lat = alert.lon or 0.0, alert.lat or 0.0
            for client in list(self._clients):
                if client.subscription.admits(alert.vehicle_id, vclass, lon, lat):
                    self._offer(client, data)

    def publish_cases(self, cases: Iterable[wire.Case]) -> None:
        """12319 case changes, to every client that may see cases (no bbox:
        a case is few and the desk needs all of them)."""
        if not self._clients:
            return
        for case in cases:
            data = wire.encode(case)
            for client in list(self._clients):
                if client.cases:
                    self._offer(client, data)
