"""The MQTT driver: subscribe, drain in bulk, hand batches to the pipeline,
acknowledge only what is durable.

Persistent session (fixed client id, clean start off, session expiry) and
QoS 1 mean the broker keeps what arrives while the server is away. Messages
are acknowledged manually (paho's ``manual_ack``), after the pipeline says
the batch is durable, and in the order received, as MQTT requires; the
broker's in-flight window (receive maximum) therefore bounds what is in
memory here, which is the flow control against a slow database.

Receiving is the dominant cost, so three paths through paho are cut short
(measured draining 60,000 queued messages: ~50 µs of CPU per message before, ~6 µs after; see
``_FastPath``): PUBLISH packets are decoded straight into ``Incoming`` (paho
builds an MQTT 5 ``Properties`` object, a ``threading.Condition`` and aiomqtt a
validated ``Topic`` for each one), the socket is read 256 KiB at a time
instead of a few bytes per packet, and a batch's acknowledgements go out as
one write. aiomqtt still owns the connection, its reconnects and its
disconnect detection. After each await the loop drains whatever else is
already queued and processes it as one batch.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gpsd_server.backoff import Backoff
from gpsd_server.settings import IngestSettings, MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int


# The pipeline takes a batch and returns an awaitable that completes when the
# batch is durable (then it is acknowledged).
Handler = Callable[[Sequence[Incoming]], Awaitable[Awaitable[None]]]


class MqttIngest:
    def __init__(
        self,
        *,
        settings: MqttSettings,
        cycle: IngestSettings,
        topics: Sequence[str],
        handler: Handler,
    ) -> None:
        self._cycle_max_bytes = cycle.cycle_max_bytes
        self._s = settings
        self._topics = list(topics)
        self._handler = handler
        self._cycle_max = cycle.cycle_max_messages
        self._receive_max = settings.receive_maximum
        self._client: aiomqtt.Client | None = None
        self._fast: _FastPath | None = None
        # Not bounded here: the broker never has more than receive_maximum
        # unacknowledged messages in flight to us, which bounds this queue. A
        # small bound here would throttle intake to a few small batches per
        # database commit.
        self._acks: asyncio.Queue[tuple[Awaitable[None], list[Incoming]]] = asyncio.Queue()
        # Messages handed to the pipeline and not yet acknowledged. The consumer
        # also keeps this under receive_maximum itself: a broker that sends
        # past the window (Mosquitto 2.0.11 did) would otherwise let ingest
        # cycles run back to back and starve the writer of turns of the loop.
        self._unacked = 0
        self._acked = asyncio.Event()
        self.connected = asyncio.Event()
        self.messages_in = 0
        self.connects = 0

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    def _make_client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._s.session_expiry_s if self._s.persistent_session else 0
        props.ReceiveMaximum = self._receive_max
        tls = None
        if self._s.tls:
            tls = ssl.create_default_context(cafile=self._s.ca_file or None)
        client = aiomqtt.Client(
            self._s.host,
            self._s.port,
            identifier=self._s.client_id,
            username=self._s.username or None,
            password=self._s.password or None,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not self._s.persistent_session,
            properties=props,
            keepalive=self._s.keepalive_s,
            tls_context=tls,
            max_queued_incoming_messages=self._s.max_queued_incoming,
        )
        # aiomqtt does not expose manual acknowledgement; paho does.
        client._client.manual_ack_set(True)  # noqa: SLF001
        self._fast = _FastPath.install(client)
        return client

    async def publish(self, topic: str, payload: bytes, qos: int = 0, *, must: bool = False) -> None:
        """Publish on the ingest connection: best effort (dead letters), or
        with ``must`` raising ``ConnectionError`` when it did not happen."""
        client = self._client
        try:
            if client is None:
                raise ConnectionError("MQTT broker not connected")
            await client.publish(topic, payload, qos=qos)
        except (aiomqtt.MqttError, ConnectionError) as exc:
            if must:
                raise ConnectionError(str(exc)) from None
            log.debug("publish to %s failed: %s", topic, exc)

    async def run(self) -> None:
        backoff = Backoff(self._s.reconnect_min_s, self._s.reconnect_max_s)
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    for topic in self._topics:
                        await client.subscribe(topic, qos=self._s.qos)
                    self.connects += 1
                    log.info(
                        "MQTT connected to %s:%d, subscribed to %s", self._s.host, self._s.port, ", ".join(self._topics)
                    )
                    self.connected.set()
                    backoff.reset()
                    # Not a TaskGroup: its ExceptionGroup would hide MqttError.
                    acker = asyncio.create_task(self._ack_loop(client), name="mqtt-acker")
                    try:
                        await self._consume(client)
                    finally:
                        acker.cancel()
                        await asyncio.gather(acker, return_exceptions=True)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._client = None
                self._drop_pending_acks()
                wait = backoff.next()
                log.warning(
                    "MQTT %s:%d unavailable (%s); reconnecting in %.1f s", self._s.host, self._s.port, exc, wait
                )
                await asyncio.sleep(wait)

    def _drop_pending_acks(self) -> None:
        # Unacknowledged messages are redelivered by the broker on the next
        # session; their data is idempotent to store again.
        while not self._acks.empty():
            self._acks.get_nowait()
        self._unacked = 0
        self._acked.set()

    async def _consume(self, client: aiomqtt.Client) -> None:
        queue = client._queue  # noqa: SLF001 - bulk drain, see the module docstring
        async for first in client.messages:
            batch = [first]
            size = _size(first)
            # Bounded by messages and by bytes: 5,000 batch messages of 50
            # fixes would block the loop (HTTP, websockets) for seconds.
            while len(batch) < self._cycle_max and size < self._cycle_max_bytes and not queue.empty():
                msg = queue.get_nowait()
                batch.append(msg)
                size += _size(msg)
            self.messages_in += len(batch)
            if self._fast is not None:
                self._fast.resume()
            items = [m if isinstance(m, Incoming) else _incoming(m) for m in batch]
            durable = await self._handler(items)
            await self._acks.put((durable, items))
            self._unacked += len(items)
            while self._unacked >= self._receive_max:
                self._acked.clear()
                await self._acked.wait()

    async def _ack_loop(self, client: aiomqtt.Client) -> None:
        paho = client._client  # noqa: SLF001
        fast = self._fast
        while True:
            durable, items = await self._acks.get()
            await durable
            if fast is not None:
                fast.ack(items)
            else:
                for m in items:
                    if m.qos > 0:
                        paho.ack(m.mid, m.qos)
            self._unacked -= len(items)
            self._acked.set()


def _size(m: Any) -> int:
    return len(m.payload) if isinstance(m.payload, bytes) else 0


def _incoming(m: aiomqtt.Message) -> Incoming:
    return Incoming(m.topic.value, _payload_bytes(m.payload), m.mid, m.qos)


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()


_PUBACKS = struct.Struct(">I")  # PUBACK: 0x40, remaining length 2, packet id


class _FastPath:
    """Short cuts through paho for the hot path, installed per connection.

    * PUBLISH packets of QoS 0 and 1 are decoded here into ``Incoming`` and put
      on aiomqtt's queue (its message iterator still reports disconnection).
      MQTT 5 properties are skipped: the server uses none of them, and a
      broker sends no topic alias to a client that allowed none. QoS 2, which
      the subscriptions never ask for, takes paho's own path.
    * The socket is read ahead: paho asks for a few bytes at a time (command,
      length, body) and handles one packet per readiness event; the wrapper
      serves those reads from one large ``recv``, and the reader registered
      here goes on while bytes are buffered (aiomqtt's does that for TLS).
    * Reading pauses while ``max_queued_incoming`` messages wait, and resumes
      when the consumer has taken them: TCP then holds the broker back.
      aiomqtt instead drops what does not fit, and a dropped QoS 1 message
      stays in the broker's in-flight window, unacknowledged, until the next
      connection. The receive maximum should keep the queue far below that
      limit, but Mosquitto 2.0.11 was seen sending well past it once this
      client read fast.
    * A batch's PUBACKs are queued as one packet: one write, one wake-up.

    These use paho internals (``_handle_publish``, ``_in_packet``,
    ``_create_socket``, ``_packet_queue``) and aiomqtt's (``_queue``,
    ``_disconnected``); ``install`` checks for them and leaves the standard
    path in place when they are missing.
    """

    _NEEDED = ("_handle_publish", "_in_packet", "_create_socket", "_packet_queue", "protocol", "on_socket_open")

    def __init__(self, client: aiomqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._paho = client._client  # noqa: SLF001
        self._queue: asyncio.Queue[Any] = client._queue  # noqa: SLF001
        self._client = client
        self._loop = loop
        self._v5 = self._paho.protocol == paho_mqtt.MQTTv5
        self._standard = self._paho._handle_publish  # noqa: SLF001
        self._high_water = self._queue.maxsize or (1 << 62)
        self._sock: _ReadAhead | None = None
        self._paused = False
        self.pauses = 0

    @classmethod
    def install(cls, client: aiomqtt.Client) -> _FastPath | None:
        paho: Any = getattr(client, "_client", None)
        if (
            not isinstance(getattr(client, "_queue", None), asyncio.Queue)
            or not isinstance(getattr(client, "_disconnected", None), asyncio.Future)
            or not all(hasattr(paho, name) for name in cls._NEEDED)
        ):
            log.info("MQTT fast path unavailable with this paho/aiomqtt version; using the standard path")
            return None
        fast = cls(client, asyncio.get_running_loop())
        create = paho._create_socket  # noqa: SLF001
        aiomqtt_open = paho.on_socket_open

        def on_socket_open(c: Any, userdata: Any, sock: Any) -> None:
            aiomqtt_open(c, userdata, sock)  # schedules its own reader, replaced next
            fast._loop.call_soon_threadsafe(fast._watch, sock)

        paho._handle_publish = fast._handle_publish  # noqa: SLF001
        paho._create_socket = lambda: _ReadAhead(create())  # noqa: SLF001
        paho.on_socket_open = on_socket_open
        return fast

    def _watch(self, sock: _ReadAhead) -> None:
        if self._paho._sock is not sock:  # noqa: SLF001 - closed meanwhile
            return
        self._sock = sock
        self._paused = False
        self._loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        sock = self._sock
        paho = self._paho
        if sock is None:
            return
        fd, pending = sock.fileno(), sock.pending
        try:
            while paho._sock is sock:  # noqa: SLF001
                paho.loop_read()
                if self._queue.qsize() >= self._high_water:
                    self._loop.remove_reader(fd)
                    self._paused = True
                    self.pauses += 1
                    return
                if pending() <= 0:
                    return
        except Exception as exc:  # noqa: BLE001 - as aiomqtt: a broken connection
            disconnected = self._client._disconnected  # noqa: SLF001 - replaced at each connect
            if not disconnected.done():
                disconnected.set_exception(exc)

    def resume(self) -> None:
        """Read again once the consumer has made room."""
        sock = self._sock
        if sock is None or not self._paused or self._queue.qsize() >= self._high_water // 2:
            return
        self._paused = False
        fd = sock.fileno()
        if self._paho._sock is sock:  # noqa: SLF001
            self._loop.add_reader(fd, self._read)
            self._loop.call_soon(self._read)  # bytes already buffered raise no event

    def _handle_publish(self) -> int:
        packet = self._paho._in_packet  # noqa: SLF001
        header: int = packet["command"]
        qos = (header >> 1) & 3
        if qos == 2:
            return int(self._standard())
        try:
            item = _decode_publish(packet["packet"], qos, v5=self._v5)
        except (IndexError, UnicodeDecodeError, ValueError):
            return int(self._standard())  # paho names the malformation
        self._queue.put_nowait(item)  # never full: reading pauses first
        return int(paho_mqtt.MQTT_ERR_SUCCESS)

    def ack(self, items: Sequence[Incoming]) -> None:
        """Acknowledge QoS 1 messages, in order, with one write."""
        mids = [0x40020000 | m.mid for m in items if m.qos == 1]
        if mids:
            packets = struct.pack(f">{len(mids)}I", *mids)
            self._paho._packet_queue(paho_mqtt.PUBACK, packets, 0, 0)  # noqa: SLF001
        for m in items:
            if m.qos == 2:
                self._paho.ack(m.mid, m.qos)


def _decode_publish(data: bytearray, qos: int, *, v5: bool) -> Incoming:
    """The body of a PUBLISH packet (after the fixed header) -> ``Incoming``."""
    n = (data[0] << 8) | data[1]
    pos = 2 + n
    if pos > len(data):
        raise ValueError("topic beyond the packet")
    topic = data[2:pos].decode()
    mid = 0
    if qos:
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
    if v5:  # properties: a variable byte integer length, then skipped
        length = 0
        for shift in (0, 7, 14, 21):
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        else:
            raise ValueError("properties length over 4 bytes")
        pos += length
        if pos > len(data):
            raise ValueError("properties beyond the packet")
    return Incoming(topic, bytes(memoryview(data)[pos:]), mid, qos)


class _ReadAhead:
    """A socket whose small reads are served from one large ``recv``."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data: bytes = self._sock.recv(max(n, 262144))
            if len(data) <= n:
                self._buf = b""
                self._pos = 0
                return data
            self._buf = data
            pos = 0
        end = min(pos + n, len(self._buf))
        self._pos = end
        return self._buf[pos:end]

    def pending(self) -> int:
        """Bytes buffered here (and in a TLS socket) that need no readiness event."""
        more = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(more)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
