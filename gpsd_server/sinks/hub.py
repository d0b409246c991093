"""The live hub: fan-out of positions and alerts to websocket clients.

Fan-out is the expensive part at scale (a websocket frame costs tens of µs per
client), so positions are sent in frames: per client and per flush interval
(``[http] ws_flush_ms``) ONE frame with every position since its last
(:class:`gpsd_server.wire.Positions`). Each position is encoded once per
flush; a client's frame is the join of the bytes its filter admits, and
clients with the same filter share one frame (one ``str``, decoded once).

A client still sending its previous frame when the next flush comes is
lagging: its positions are conflated to the latest per vehicle (a map shows
where vehicles are, not where they were) and it gets them in one frame as
soon as it is ready, so a burst after a stall costs it memory per vehicle, not
per position, and it is never dropped for positions.

Alerts, zone records, snapshots and replies are never conflated: they go to a
bounded per-client queue (``[http] ws_send_queue`` frames), alerts at once
(the desk must not wait for a flush), zone records (a dense city raises one
every few fixes) with the flush. The zone records of one flush, and the alerts
of a cycle too many for half the room left in a client's queue, go as one
:class:`gpsd_server.wire.Batch` frame per filter taking one place in it.
While more than half of a client's queue waits, what queued up goes out as
one batch frame too (a batch may hold batches), so a burst costs a frame per
client, not a frame per message. A client is dropped (and told why) only when
that queue overflows.

A client may ask for the lean form of the frames of positions
(:class:`gpsd_server.wire.PositionRows`, a third of the bytes; the page does)
and to go without zone records (the page does not show them); each form is
encoded once per flush, and only when a client wants it.

The hub is fed through ``publish_positions`` / ``publish_alerts`` only (the
:class:`LiveSink` interface), so an API node can be fed from a broker instead
of the ingest loop, and it keeps every vehicle's last position for the
snapshot a client gets on connect and for 12319 dispatch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from gpsd_server import wire
from gpsd_server.model import finite_number

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

    @property
    def reads_zone_records(self) -> bool:
        """Whether zone records published now reach anyone (else the pipeline builds none)."""
        ...


@dataclass(slots=True)
class Subscription:
    """A client's narrowing of what it receives; empty means everything.

    ``scope`` is not the client's to choose: it is the account's (a company
    account's vehicles; None for the city's own accounts), set when the socket
    opens and carried into every subscription the client sends after."""

    bbox: tuple[float, float, float, float] | None = None
    classes: frozenset[str] = frozenset()
    vehicles: frozenset[str] = frozenset()
    scope: frozenset[str] | None = None

    def admits(self, vehicle_id: str, vehicle_class: str, lon: float, lat: float) -> bool:
        if self.scope is not None and vehicle_id not in self.scope:
            return False
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


def parse_subscription(msg: Any, *, max_vehicles: int = 10000, scope: frozenset[str] | None = None) -> Subscription:
    """A client's subscribe message, within the account's ``scope``."""
    if not isinstance(msg, dict):
        raise SubscriptionError("message must be an object")
    bbox = msg.get("bbox")
    if bbox is not None:
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(finite_number(v) for v in bbox)
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
    return Subscription(bbox=bbox, classes=frozenset(classes), vehicles=frozenset(vehicles), scope=scope)


# Queued to wake a sender waiting on an empty queue when a critical alert
# arrives in its own lane (skipped by the sender; compared by identity).
WAKE = "\x00wake"
# A frame of messages stops growing past this (characters): a critical alert
# waits at most for the frame on the wire, not for a burst of thousands.
FRAME_MAX_CHARS = 64 * 1024
# From this many positions a flush rounds them with numpy (fewer: the arrays cost more than they save).
_VECTOR_ROWS = 32


@dataclass(eq=False)
class Client:
    """One websocket client: what the hub has for it and its sender has not sent yet.

    ``queue`` holds control messages (alerts, snapshots, replies) and at most
    one frame of positions (``pending_frame``, the same object); while that
    frame is queued or being sent, newer positions wait in ``conflated``.
    The sender takes the queue in order and calls :meth:`next_frame` after
    sending the frame. An empty string in the queue means: dropped.
    """

    queue: asyncio.Queue[str]
    subscription: Subscription = field(default_factory=Subscription)
    rows: bool = False  # positions as wire.PositionRows (the lean form) instead of wire.Positions
    zones: bool = True  # receives zone presence records
    dropped: str | None = None  # why the hub gave up on this client
    cases: bool = True  # receives 12319 case messages (accounts that may see cases)
    pending_frame: str | None = None
    conflated: dict[str, bytes] = field(default_factory=dict)
    frames: int = 0  # frames of positions handed to this client
    conflated_positions: int = 0  # positions replaced by a newer one of the same vehicle
    _held: str | None = None  # taken from the queue by outgoing(), to be sent next
    urgent: deque[str] = field(default_factory=deque)  # critical alerts: sent before everything queued

    async def outgoing(self) -> str | None:
        """The next frame to send, None once dropped.

        Critical alerts (``urgent``) go before anything else. Other control
        messages go before a frame of positions queued ahead of them: the
        frame waits in ``_held`` while they go, so an alert never waits behind
        tens of KB of positions on a busy socket (positions say where vehicles
        are now; one frame later changes nothing). After sending the frame of
        positions, call :meth:`frame_sent`. While more than half of the queue
        waits (a burst), the control messages queued go out batched into
        frames of up to ``FRAME_MAX_CHARS``.

        Always yields to the loop once first: neither ``get()`` on a queue
        that holds something nor a send into a socket with room in its buffer
        does, so a sender with a backlog would empty it in one go while ingest
        and every other client waited (measured: a 1.2 s stall and alert p99
        0.7-1.5 s at 2,000 fixes/s with 100 clients behind a burst of ends)."""
        await asyncio.sleep(0)
        while True:
            if self.urgent:
                return self.urgent.popleft()
            held = self._held
            if held is not None and held is not self.pending_frame:
                self._held = None  # the drop, held back by the last batch
                data = held
            elif held is not None:  # the frame of positions: after every control message queued
                if self.queue.empty():
                    self._held = None
                    return held
                data = self.queue.get_nowait()
            else:
                data = await self.queue.get()
                if data and data is self.pending_frame:
                    if self.queue.empty():
                        return data
                    self._held, data = data, self.queue.get_nowait()
            if data is not WAKE:
                break
        if not data:
            return None
        if self.queue.qsize() <= self.queue.maxsize // 2 or len(data) >= FRAME_MAX_CHARS:
            return data
        batch, size = [data], len(data)
        while not self.queue.empty() and size < FRAME_MAX_CHARS:
            following = self.queue.get_nowait()
            if following is WAKE:
                continue
            if not following:
                self._held = following  # dropped: nothing after it matters
                break
            if following is self.pending_frame:
                self._held = following  # the frame goes after the batch
                continue
            batch.append(following)
            size += len(following)
        return wire.batch_frame(batch)

    def put_urgent(self, items: list[str], limit: int) -> bool:
        """Critical alerts, sent before everything queued (in their order); False
        when more than ``limit`` would wait."""
        if len(self.urgent) + len(items) > limit:
            return False
        self.urgent.extend(items)
        if self.queue.empty():  # the sender may be waiting on the queue: wake it
            self.queue.put_nowait(WAKE)
        return True

    def frame_sent(self) -> None:
        """The sender sent the pending frame of positions: what the hub conflated
        meanwhile becomes the next one, sent after the control messages queued."""
        frame = self.next_frame()
        if frame is not None and self.dropped is None:
            self._held = frame

    def drop(self, why: str) -> None:
        """Forget what is queued and wake the sender to close with the reason."""
        self.dropped = why
        self.pending_frame = None
        self.conflated = {}
        self._held = None
        self.urgent.clear()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait("")

    def next_frame(self) -> str | None:
        """After the pending frame is sent: the conflated positions as the next
        frame (now pending), or None when the client has caught up."""
        if not self.conflated:
            self.pending_frame = None
            return None
        frame = _positions_frame(list(self.conflated.values()), self.rows)
        self.conflated = {}
        self.pending_frame = frame
        self.frames += 1
        return frame


def _positions_frame(items: list[bytes], rows: bool) -> str:
    """One frame of positions encoded once each, in the client's form."""
    return (wire.rows_frame(items) if rows else wire.positions_frame(items)).decode()


def _chunks(encoded: list[str]) -> list[str]:
    """Batch frames of at most ~``FRAME_MAX_CHARS`` each (a message larger alone is its own)."""
    frames: list[str] = []
    start, size = 0, 0
    for i, data in enumerate(encoded):
        if i > start and size + len(data) > FRAME_MAX_CHARS:
            frames.append(wire.batch_frame(encoded[start:i]))
            start, size = i, 0
        size += len(data)
    if start < len(encoded):
        frames.append(wire.batch_frame(encoded[start:]))
    return frames


def _key(sub: Subscription) -> tuple[object, ...]:
    return (sub.bbox, sub.classes, sub.vehicles, sub.scope)


_EVERYTHING = _key(Subscription())


class LiveHub:
    def __init__(
        self, *, max_clients: int = 500, send_queue: int = 2000, moving_kmh: float = 5.0, flush_ms: int = 0
    ) -> None:
        """``flush_ms`` 0 sends the positions of each ``publish_positions`` call
        as one frame at once (tests, tools); the server uses ``[http] ws_flush_ms``."""
        self._max_clients = max_clients
        self._send_queue = send_queue
        self._moving_kmh = moving_kmh
        self._flush_s = flush_ms / 1000
        self._clients: set[Client] = set()
        self._positions: dict[str, LivePosition] = {}
        self._buffer: list[LivePosition] = []  # published since the last flush (only while clients exist)
        self._zones: list[wire.Alert] = []  # zone records waiting for the flush
        self._flush_handle: asyncio.TimerHandle | None = None
        self.messages_sent = 0  # control messages and frames handed to clients
        self.frames_built = 0  # distinct frames built (shared by clients with the same filter)
        self.positions_encoded = 0
        self.positions_conflated = 0
        self.clients_dropped = 0

    @property
    def positions(self) -> Mapping[str, LivePosition]:
        """Every vehicle's last position (read-only)."""
        return self._positions

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def reads_zone_records(self) -> bool:
        """A client takes zone records. The page asks for none (``zones=false``)
        and a dense city raises one every few fixes: building their messages for
        nobody cost ~2 µs per fix in the benchmark city."""
        return any(c.zones for c in self._clients)

    def restore(self, positions: Iterable[LivePosition]) -> None:
        for p in positions:
            self._positions[p.vehicle_id] = p

    def add_client(self) -> Client | None:
        if len(self._clients) >= self._max_clients:
            return None
        # One slot more than the control backlog: room for the one pending frame.
        client = Client(queue=asyncio.Queue(maxsize=self._send_queue + 1))
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

    def _offer(self, client: Client, data: str) -> bool:
        try:
            client.queue.put_nowait(data)
        except asyncio.QueueFull:
            self._drop(client, "too slow: send queue full")
            return False
        self.messages_sent += 1
        return True

    def _offer_first(self, client: Client, items: list[str]) -> bool:
        """Queue ``items`` (critical alerts, in order) before everything else the
        client has waiting: other alerts, zone records, replies, its frame of positions."""
        if not client.put_urgent(items, self._send_queue):
            self._drop(client, "too slow: send queue full")
            return False
        self.messages_sent += len(items)
        return True

    def _drop(self, client: Client, why: str) -> None:
        self.clients_dropped += 1
        self._clients.discard(client)
        client.drop(why)

    def reply(self, client: Client, data: bytes) -> None:
        """A message for one client only (errors, a new snapshot)."""
        if client in self._clients:
            self._offer(client, data.decode())

    # -- positions: buffered, then one frame per client per flush ---------------

    def publish_positions(self, positions: Iterable[LivePosition]) -> None:
        buffer = self._buffer if self._clients else None
        last = self._positions
        for p in positions:
            prev = last.get(p.vehicle_id)
            if prev is not None and prev.ts > p.ts:
                continue
            last[p.vehicle_id] = p
            if buffer is not None:
                buffer.append(p)
        if self._buffer:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_s <= 0:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self._flush_s, self.flush)

    def flush(self) -> None:
        """Hand every client what was buffered since the last flush and its
        filter admits: positions in one frame (conflated while it is still
        busy), then the zone records."""
        self._flush_handle = None
        buffered, self._buffer = self._buffer, []
        zones, self._zones = self._zones, []
        if buffered and self._clients:
            self._flush_positions(buffered)
        if zones and self._clients:
            self._flush_zones(zones)

    def _flush_zones(self, zones: list[wire.Alert]) -> None:
        self._offer_batch(zones, zones=True)

    def _offer_batch(self, alerts: list[wire.Alert], *, zones: bool = False) -> None:
        """Alerts of one cycle (or a flush's zone records) to every client that
        admits them, critical ones ahead of whatever the client has waiting.
        One by one while they fill at most half of the room left in its
        queue, else (and always for zone records) as batch frames of up to
        ``FRAME_MAX_CHARS`` per filter, each taking one place: a dense city
        raises thousands in a burst, more than a client's queue holds however
        fast it reads, and a critical alert raised meanwhile must not wait
        behind megabytes of them."""
        encoded = [(wire.encode(a).decode(), a.vehicle_id, a.vehicle_class or "other", a.lon or 0.0, a.lat or 0.0)
                   for a in alerts]  # fmt: skip
        if zones:
            self._offer_lane(encoded, zones=True, first=False)
            return
        critical = [a.severity == "critical" for a in alerts]
        if any(critical):
            self._offer_lane([e for e, c in zip(encoded, critical, strict=True) if c], zones=False, first=True)
            encoded = [e for e, c in zip(encoded, critical, strict=True) if not c]
        if encoded:
            self._offer_lane(encoded, zones=False, first=False)

    def _offer_lane(self, encoded: list[tuple[str, str, str, float, float]], *, zones: bool, first: bool) -> None:
        """``zones``: zone records (always batched, only to clients that take them)."""
        admitted_by: dict[tuple[object, ...], list[str]] = {}
        frames: dict[tuple[object, ...], list[str]] = {}
        for client in list(self._clients):
            if zones and not client.zones:
                continue
            sub = client.subscription
            key = _key(sub)
            admitted = admitted_by.get(key)
            if admitted is None:
                admitted = [data for data, v, cls, lon, lat in encoded if sub.admits(v, cls, lon, lat)]
                admitted_by[key] = admitted
            if not admitted:
                continue
            room = client.queue.maxsize - client.queue.qsize() - 1
            if not zones and len(admitted) <= room // 2:
                items = admitted
            else:
                items = frames.get(key) or frames.setdefault(key, _chunks(admitted))
            if first:
                self._offer_first(client, items)
                continue
            for data in items:
                if not self._offer(client, data):
                    break

    def _flush_positions(self, buffered: list[LivePosition]) -> None:
        moving = self._moving_kmh
        encoded: dict[bool, list[bytes]] = {}  # per form (rows or not), each position encoded once
        groups: dict[tuple[object, ...], tuple[list[str], list[bytes], str | None]] = {}
        for client in list(self._clients):
            sub = client.subscription
            form = client.rows
            key = (*_key(sub), form)
            group = groups.get(key)
            if group is None:
                items = encoded.get(form)
                if items is None:
                    items = encoded[form] = self._encode(buffered, form, moving)
                if key[:-1] == _EVERYTHING:
                    ids = [p.vehicle_id for p in buffered]
                else:
                    admitted = [
                        i for i, p in enumerate(buffered) if sub.admits(p.vehicle_id, p.vehicle_class, p.lon, p.lat)
                    ]
                    ids, items = [buffered[i].vehicle_id for i in admitted], [items[i] for i in admitted]
                group = groups[key] = (ids, items, None)
            ids, items, frame = group
            if not items:
                continue
            if client.pending_frame is None:
                if frame is None:
                    frame = _positions_frame(items, form)
                    groups[key] = (ids, items, frame)
                    self.frames_built += 1
                client.pending_frame = frame
                client.frames += 1
                if not self._offer(client, frame):
                    continue
            else:  # still busy with its last frame: keep the latest per vehicle
                before = len(client.conflated)
                client.conflated.update(zip(ids, items, strict=True))
                replaced = len(ids) - (len(client.conflated) - before)
                client.conflated_positions += replaced
                self.positions_conflated += replaced

    def _encode(self, buffered: list[LivePosition], rows: bool, moving: float) -> list[bytes]:
        self.positions_encoded += len(buffered)
        if rows:
            if len(buffered) >= _VECTOR_ROWS:
                return wire.position_rows(
                    [p.vehicle_id for p in buffered], [p.ts for p in buffered], [p.lon for p in buffered],
                    [p.lat for p in buffered], [p.speed_kmh for p in buffered], [p.heading for p in buffered],
                    [p.vehicle_class for p in buffered],
                )  # fmt: skip
            row = wire.position_row
            return [row(p.vehicle_id, p.ts, p.lon, p.lat, p.speed_kmh, p.heading, p.vehicle_class) for p in buffered]
        encode = wire.encode
        return [encode(p.message(moving)) for p in buffered]

    # -- alerts: at once, never conflated ----------------------------------------

    def publish_alerts(self, alerts: Iterable[wire.Alert]) -> None:
        """Alerts go to every client that admits them at once; zone records
        with the next flush."""
        if not self._clients:
            return  # nobody to tell: the messages are not even encoded
        now: list[wire.Alert] = []
        zones = self._zones if self.reads_zone_records else None  # else nobody reads them
        for alert in alerts:
            if isinstance(alert, wire.ZoneRecord):
                if zones is not None:
                    zones.append(alert)
            else:
                now.append(alert)
        if now:
            self._offer_batch(now)
        if self._zones:
            self._schedule_flush()

    def publish_cases(self, cases: Iterable[wire.Case]) -> None:
        """12319 case changes, to every client that may see cases (no bbox:
        a case is few and the desk needs all of them)."""
        if not self._clients:
            return
        for case in cases:
            data = wire.encode(case).decode()
            for client in list(self._clients):
                if client.cases:
                    self._offer(client, data)
