"""The MQTT driver: subscribe, drain in bulk, hand batches to the pipeline,
acknowledge only what is durable.

Persistent session (fixed client id, clean start off, session expiry) and
QoS 1 mean the broker keeps what arrives while the server is away. Messages
are acknowledged after the pipeline says the batch is durable, in the order
received (as MQTT requires), one write per batch of PUBACKs. The client
(:mod:`gpsd_server.mqtt`) stops reading while ``receive_maximum`` messages
are unacknowledged, which is the flow control against a slow database: the
broker keeps the rest. The connection is reopened with jittered backoff;
what was not acknowledged on the old one comes again (storage is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from gpsd_server.backoff import Backoff
from gpsd_server.mqtt import Message, MqttClient, MqttError
from gpsd_server.settings import IngestSettings, MqttSettings

log = logging.getLogger(__name__)

# The pipeline takes a batch and returns an awaitable that completes when the
# batch is durable (then it is acknowledged).
Handler = Callable[[Sequence[Message]], Awaitable[Awaitable[None]]]


class MqttIngest:
    def __init__(
        self,
        *,
        settings: MqttSettings,
        cycle: IngestSettings,
        topics: Sequence[str],
        handler: Handler,
    ) -> None:
        s = settings
        self._s = s
        self._cycle = cycle
        self._topics = list(topics)
        self._handler = handler
        self._client = MqttClient(
            host=s.host,
            port=s.port,
            client_id=s.client_id,
            username=s.username,
            password=s.password,
            tls=s.tls,
            ca_file=s.ca_file,
            keepalive_s=s.keepalive_s,
            clean_start=not s.persistent_session,
            session_expiry_s=s.session_expiry_s if s.persistent_session else 0,
            receive_maximum=s.receive_maximum,
            protocol=s.protocol,
            max_buffered_bytes=s.max_buffered_mb * 1024 * 1024,
        )
        self.connected = asyncio.Event()
        self.connects = 0

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    @property
    def messages_in(self) -> int:
        return self._client.stats.messages_in

    @property
    def client(self) -> MqttClient:
        """The MQTT client (its ``stats`` say which decode path ran, how often reading paused)."""
        return self._client

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Publish on the ingest connection (the gateway's commands), raising
        ``ConnectionError`` when it did not happen; dead letters go best effort
        through :meth:`dead_letters`."""
        try:
            await self._client.publish(topic, payload, qos=qos)
        except MqttError as exc:
            raise ConnectionError(str(exc)) from None

    async def dead_letters(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """A batch's dead letters, best effort (QoS 0, one write for all of them)."""
        try:
            await self._client.publish_many(messages)
        except MqttError as exc:
            log.debug("%d dead letters not published: %s", len(messages), exc)

    async def run(self) -> None:
        backoff = Backoff(self._s.reconnect_min_s, self._s.reconnect_max_s)
        client = self._client
        while True:
            try:
                await client.connect()
                await client.subscribe(self._topics, qos=self._s.qos)
                self.connects += 1
                log.info(
                    "MQTT connected to %s:%d, subscribed to %s", self._s.host, self._s.port, ", ".join(self._topics)
                )
                self.connected.set()
                backoff.reset()
                await self._consume(client)
            except MqttError as exc:
                self.connected.clear()
                wait = backoff.next()
                log.warning(
                    "MQTT %s:%d unavailable (%s); reconnecting in %.1f s", self._s.host, self._s.port, exc, wait
                )
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                self.connected.clear()
                with contextlib.suppress(MqttError):
                    await client.close()
                raise

    async def _consume(self, client: MqttClient) -> None:
        """Drain batches into the pipeline; an acker acknowledges each one, in
        order, once durable. Ends with the connection (``MqttError``)."""
        pending: asyncio.Queue[tuple[Awaitable[None], list[Message]]] = asyncio.Queue()

        async def acker() -> None:
            while True:
                durable, batch = await pending.get()
                await durable
                client.ack(batch)

        # Not a TaskGroup: its ExceptionGroup would hide the MqttError that ends the connection.
        acking = asyncio.create_task(acker(), name="mqtt-acker")
        try:
            c = self._cycle
            async for batch in client.batches(max_messages=c.cycle_max_messages, max_bytes=c.cycle_max_bytes):
                durable = await self._handler(batch)
                pending.put_nowait((durable, batch))
        finally:
            acking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acking
