"""The MQTT driver: subscribe, drain in bulk, hand batches to the pipeline,
acknowledge only what is durable.

Persistent session (fixed client id, clean start off, session expiry) and
QoS 1 mean the broker keeps what arrives while the server is away. Messages
are acknowledged manually (paho's ``manual_ack``), after the pipeline says
the batch is durable, and in the order received, as MQTT requires; the
broker's in-flight window (receive maximum) therefore bounds what is in
memory here, which is the flow control against a slow database.

aiomqtt hands out one message per await; receiving is the dominant cost, so
after each await the loop drains whatever else is already queued and
processes it as one batch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gpsd_server.config import MqttSettings

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


def jittered(delay: float) -> float:
    return delay * (0.5 + random.random())


class MqttIngest:
    def __init__(
        self,
        *,
        settings: MqttSettings,
        topics: Sequence[str],
        handler: Handler,
        cycle_max_messages: int = 5000,
        cycle_max_bytes: int = 1 << 20,
        receive_maximum: int = 2000,
    ) -> None:
        self._cycle_max_bytes = cycle_max_bytes
        self._s = settings
        self._topics = list(topics)
        self._handler = handler
        self._cycle_max = cycle_max_messages
        self._receive_max = receive_maximum
        self._client: aiomqtt.Client | None = None
        # Not bounded here: the broker never has more than receive_maximum
        # unacknowledged messages in flight to us, which bounds this queue. A
        # small bound here would throttle intake to a few small batches per
        # database commit.
        self._acks: asyncio.Queue[tuple[Awaitable[None], list[Incoming]]] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.messages_in = 0
        self.connects = 0

    def _make_client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600 if self._s.persistent_session else 0
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
        delay = self._s.reconnect_min_s
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
                    delay = self._s.reconnect_min_s
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
                wait = jittered(delay)
                log.warning(
                    "MQTT %s:%d unavailable (%s); reconnecting in %.1f s", self._s.host, self._s.port, exc, wait
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._s.reconnect_max_s)

    def _drop_pending_acks(self) -> None:
        # Unacknowledged messages are redelivered by the broker on the next
        # session; their data is idempotent to store again.
        while not self._acks.empty():
            self._acks.get_nowait()

    async def _consume(self, client: aiomqtt.Client) -> None:
        queue = client._queue  # noqa: SLF001 - bulk drain, see the module docstring
        async for first in client.messages:
            batch = [first]
            size = len(first.payload) if isinstance(first.payload, bytes) else 0
            # Bounded by messages and by bytes: 5,000 batch messages of 50
            # fixes would block the loop (HTTP, websockets) for seconds.
            while len(batch) < self._cycle_max and size < self._cycle_max_bytes and not queue.empty():
                msg = queue.get_nowait()
                batch.append(msg)
                size += len(msg.payload) if isinstance(msg.payload, bytes) else 0
            self.messages_in += len(batch)
            items = [Incoming(m.topic.value, _payload_bytes(m.payload), m.mid, m.qos) for m in batch]
            durable = await self._handler(items)
            await self._acks.put((durable, items))

    async def _ack_loop(self, client: aiomqtt.Client) -> None:
        paho = client._client  # noqa: SLF001
        while True:
            durable, items = await self._acks.get()
            await durable
            for m in items:
                if m.qos > 0:
                    paho.ack(m.mid, m.qos)


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()
