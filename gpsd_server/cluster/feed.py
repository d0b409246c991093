"""The live hub fed over the broker.

Workers publish what their pipeline hands the hub -- positions and alerts of
a batch -- as one :class:`HubFrame` on ``{hub_exchange}`` with publisher
confirms, *before* the batch is acknowledged to its partition: a crash
between commit and acknowledgement then means a redelivery and the frame
published again, never a stored fix or alert no desk saw.

Every API node binds its own exclusive queue to everything on the exchange
and feeds its own :class:`~gpsd_server.sinks.hub.LiveHub` (its websocket
clients, its snapshots), deduplicating what a redelivery repeats: positions
not newer than the vehicle's last, alerts already seen in the same phase and
state. Alert updates on a node's desk (acknowledged, closed) go to its own
hub at once and to the exchange as ``desk`` frames for the other nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import aio_pika
import msgspec
from aio_pika.abc import AbstractConnection, AbstractExchange

from gpsd_server import wire
from gpsd_server.cluster.topology import DESK_KEY, HUB_KEY
from gpsd_server.errors import ClusterError
from gpsd_server.settings import ClusterSettings
from gpsd_server.sinks.hub import Client, LiveHub, LivePosition

log = logging.getLogger(__name__)

SEEN_ALERTS = 100_000  # alert states remembered for deduplication per API node


class HubFrame(msgspec.Struct, frozen=True, kw_only=True):
    """One message on the hub exchange."""

    origin: str  # the node that sent it (a node skips its own desk frames)
    positions: list[LivePosition] = []
    alerts: list[wire.Alert | wire.ZoneRecord] = []


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(HubFrame).decode


async def _connect(settings: ClusterSettings, name: str) -> tuple[AbstractConnection, AbstractExchange]:
    conn = await aio_pika.connect(
        settings.amqp_url, heartbeat=settings.heartbeat_s, client_properties={"connection_name": name}
    )
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(settings.hub_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    return conn, exchange


async def _until_closed(conn: AbstractConnection) -> None:
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(*_: object) -> None:
        if not closed.done():
            closed.set_result(None)

    conn.close_callbacks.add(done)
    await closed


class BrokerHub:
    """A worker's hub: the pipeline's :class:`~gpsd_server.sinks.hub.LiveSink`,
    sent over the broker. ``take`` + ``send`` put a batch's frame out before
    its acknowledgement; what else was published (alerts of the rule tick) goes
    out within ``flush_s``."""

    def __init__(self, settings: ClusterSettings, *, origin: str, flush_s: float = 0.05) -> None:
        self._s, self.origin, self._flush_s = settings, origin, flush_s
        self._positions: list[LivePosition] = []
        self._alerts: list[wire.Alert] = []
        self._exchange: AbstractExchange | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.frames_sent = 0

    def publish_positions(self, positions: Iterable[LivePosition]) -> None:
        self._positions.extend(positions)

    def publish_alerts(self, alerts: Iterable[wire.Alert]) -> None:
        self._alerts.extend(alerts)

    @property
    def reads_zone_records(self) -> bool:
        return True  # the API nodes' clients may: they choose, not the worker

    def take(self) -> HubFrame | None:
        if not self._positions and not self._alerts:
            return None
        frame = HubFrame(origin=self.origin, positions=self._positions, alerts=list(self._alerts))
        self._positions, self._alerts = [], []
        return frame

    async def send(self, frame: HubFrame | None) -> None:
        """Publish and wait for the broker's confirm."""
        if frame is None:
            return
        if self._closed:
            raise ClusterError("hub feed closed: the frame cannot be confirmed")
        await self._ready.wait()
        assert self._exchange is not None
        mode = aio_pika.DeliveryMode.PERSISTENT if frame.alerts else aio_pika.DeliveryMode.NOT_PERSISTENT
        await self._exchange.publish(aio_pika.Message(_encode(frame), delivery_mode=mode), routing_key=HUB_KEY)
        self.frames_sent += 1

    async def run(self) -> None:
        conn, self._exchange = await _connect(self._s, f"{self.origin}-hub")
        self._ready.set()
        try:
            closed = asyncio.create_task(_until_closed(conn))
            while not closed.done():
                await self.send(self.take())
                await asyncio.wait([closed], timeout=self._flush_s)
            raise ClusterError("hub feed: AMQP connection closed")
        finally:
            self._ready.clear()
            self._closed = True
            with contextlib.suppress(Exception):
                await conn.close()


class HubListener:
    """An API node's feed: frames from the exchange into its own hub, and the
    node's desk updates out to the others. It is the node's
    :class:`~gpsd_server.api.deps.LiveFeed` (the hub's, plus the broadcast)."""

    def __init__(self, settings: ClusterSettings, *, hub: LiveHub, origin: str) -> None:
        self._s, self._hub, self.origin = settings, hub, origin
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._exchange: AbstractExchange | None = None
        self._out: asyncio.Queue[HubFrame] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.frames_in = 0
        self.duplicates = 0

    # -- LiveFeed -------------------------------------------------------------

    @property
    def positions(self) -> Mapping[str, LivePosition]:
        return self._hub.positions

    def add_client(self) -> Client | None:
        return self._hub.add_client()

    def remove_client(self, client: Client) -> None:
        self._hub.remove_client(client)

    def snapshot(self, client: Client, limit: int) -> bytes:
        return self._hub.snapshot(client, limit)

    def reply(self, client: Client, data: bytes) -> None:
        self._hub.reply(client, data)

    def publish_alerts(self, alerts: Iterable[wire.Alert]) -> None:
        """A desk update on this node: its clients now, the other nodes' through the broker."""
        fresh = self._fresh(alerts)
        if fresh:
            self._hub.publish_alerts(fresh)
            self._out.put_nowait(HubFrame(origin=self.origin, alerts=fresh))

    # -- the feed -------------------------------------------------------------

    def _fresh(self, alerts: Iterable[wire.Alert]) -> list[wire.Alert]:
        out = []
        for a in alerts:
            key = (a.id, a.phase or "", f"{a.state}|{a.acked_at}|{a.closed_at}|{a.ended_at}")
            if key in self._seen:
                self.duplicates += 1
                continue
            self._seen[key] = None
            if len(self._seen) > SEEN_ALERTS:
                self._seen.popitem(last=False)
            out.append(a)
        return out

    def receive(self, frame: HubFrame) -> None:
        """One frame from the exchange into the hub, without what it repeats."""
        self.frames_in += 1
        last = self._hub.positions
        newer = []
        for p in frame.positions:
            known = last.get(p.vehicle_id)
            if known is not None and known.ts >= p.ts:
                self.duplicates += 1
                continue
            newer.append(p)
        if newer:
            self._hub.publish_positions(newer)
        alerts = self._fresh(frame.alerts)
        if alerts:
            self._hub.publish_alerts(alerts)

    async def run(self) -> None:
        conn, self._exchange = await _connect(self._s, f"{self.origin}-feed")
        try:
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=1000)
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(self._s.hub_exchange, routing_key="#")
            self.connected.set()
            log.info("API node %s fed from %s on %s", self.origin, self._s.hub_exchange, self._s.amqp_url)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_desk(), name="hub-desk-out")
                async with queue.iterator() as messages:
                    async for msg in messages:
                        frame = _decode(msg.body)
                        if frame.origin != self.origin:
                            self.receive(frame)
                        await msg.ack()
                raise ClusterError("hub feed: queue closed")
        finally:
            self.connected.clear()
            with contextlib.suppress(Exception):
                await conn.close()

    async def _send_desk(self) -> None:
        while True:
            frame = await self._out.get()
            assert self._exchange is not None
            await self._exchange.publish(
                aio_pika.Message(_encode(frame), delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=DESK_KEY
            )
