"""The asyncio MQTT client: one connection, persistent session, batched
receive with manual in-order acknowledgement, and its own flow control.

Why an ``asyncio.Protocol`` and not streams: ``data_received`` hands over each
chunk the event loop read (up to 256 KiB) with no further copy, the decoder
turns it into messages in one pass, and ``transport.pause_reading()`` is the
flow control. Streams would add a copy into the ``StreamReader`` buffer, a
second one out of it, an await per read and a pause policy of their own (its
buffer limit, not our count of unacknowledged messages). Measured: a bare
streams loop over the same codec (``reader.read(256 KiB)``, decode, one PUBACK
write per read; no flow control, no batching API) drained 100,000 queued
messages at 2.6-5.3 µs of CPU a message, this Protocol at 2.8-3.9 µs, on a
shared 2-core machine whose noise is larger than the difference. So the
choice rests on the flow control, which streams do not expose.

Read coalescing: Mosquitto writes each PUBLISH with its own send(), so a
client that keeps up wakes for every few packets, and the wake-up (epoll,
recv, callback, task switch, one PUBACK write per batch) costs far more than
decoding. After a short read that follows another within ``read_coalesce_s``
(default 1 ms), reading pauses for that long and the kernel gathers the
segments. Measured draining 100,000 queued messages: 3-8 µs of client CPU a
message without it (6,000-34,000 reads, varying run to run), 1.9-2.5 µs with
it (200-450 reads), and the broker's CPU a message fell as well (fewer PUBACK
wake-ups). A message arriving on a quiet connection is never held; the cost
is up to 1 ms more latency under sustained load. ``read_coalesce_s=0`` turns
it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from gpsd_server.mqtt import codec
from gpsd_server.mqtt.codec import (
    PINGREQ_PACKET,
    PROTOCOL_V5,
    PROTOCOL_V311,
    ConnAck,
    Disconnect,
    Message,
    PingResp,
    PubAck,
    StreamDecoder,
    SubAck,
)
from gpsd_server.mqtt.errors import (
    ConnectionLost,
    ConnectRefused,
    DisconnectedByBroker,
    MalformedPacket,
    MqttError,
    MqttTimeout,
    NotConnected,
    ProtocolViolation,
    PublishRefused,
    SubscribeRefused,
)


@dataclass(slots=True)
class Stats:
    """Counters of one client, over all its connections."""

    connects: int = 0
    messages_in: int = 0  # PUBLISH packets received (QoS 0 and 1)
    qos1_in: int = 0
    bytes_in: int = 0  # bytes read from the transport
    reads: int = 0  # data_received calls (chunks read)
    fast_path_decodes: int = 0  # PUBLISH packets decoded by our own fast path
    slow_path_decodes: int = 0  # MQTT 5 PUBLISH packets with properties, decoded by mqtt5
    acks_sent: int = 0  # PUBACKs written
    ack_writes: int = 0  # transport writes that carried them
    acks_dropped: int = 0  # QoS 1 messages passed to ack() with no connection (the broker redelivers them)
    pauses: int = 0  # times reading was paused (receive maximum reached or too many bytes buffered)
    coalesce_holds: int = 0  # short read pauses to let small segments pile up (see read_coalesce_s)
    resumes: int = 0
    over_receive_maximum: int = 0  # QoS 1 messages received while receive_maximum were already unacked
    max_unacked: int = 0  # highest count of unacknowledged QoS 1 messages seen
    pings_sent: int = 0
    pongs_received: int = 0
    publishes_out: int = 0
    publish_writes: int = 0  # transport writes that carried QoS 0 publishes (publish_many: one per call)
    pubacks_in: int = 0


# A read shorter than this, right after another one, starts a read-coalescing hold.
_COALESCE_BELOW = 32 * 1024


class _Connection(asyncio.Protocol):
    """The state of one network connection (a new one per ``connect``)."""

    def __init__(self, client: MqttClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.stats = client.stats
        self.protocol = client.protocol
        self.receive_maximum = client.receive_maximum
        self.max_buffered = client.max_buffered_bytes
        self.decoder = StreamDecoder(client.protocol, client.max_packet_bytes)
        self.transport: asyncio.Transport | None = None
        self.pending: list[Message] = []  # received, not yet handed out by batches()
        self.pending_bytes = 0  # payload bytes in ``pending``
        self.unacked = 0  # QoS 1 messages received and not acknowledged
        self.paused = False  # reading paused for flow control
        self.coalesce_s = client.read_coalesce_s
        self.holding: asyncio.TimerHandle | None = None  # reading paused for read coalescing
        self.lost: MqttError | None = None  # set once: why the connection ended
        self.connack: asyncio.Future[ConnAck] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self.subacks: dict[int, asyncio.Future[SubAck]] = {}
        # Our QoS 1 PUBLISHes and SUBSCRIBEs by packet id. ``None`` marks an
        # id whose publish() timed out: it stays reserved until its PUBACK
        # comes, so that a new PUBLISH never reuses an id still in flight.
        self.pubacks: dict[int, asyncio.Future[PubAck] | None] = {}
        self.next_pid = 0
        self.inflight_out: asyncio.Semaphore | None = None
        self.keepalive = 0.0
        self.timer: asyncio.TimerHandle | None = None
        now = loop.time()
        self.last_read = now
        self.last_write = now
        self.ping_sent_at: float | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.lost is not None:
            return
        stats = self.stats
        stats.bytes_in += len(data)
        stats.reads += 1
        now = self.loop.time()
        previous_read = self.last_read
        self.last_read = now
        pending = self.pending
        before = len(pending)
        decoder = self.decoder
        fast0 = decoder.fast_publishes
        slow0 = decoder.slow_publishes
        try:
            qos1, nbytes, controls = decoder.feed(data, pending)
        except MalformedPacket as exc:
            # The messages before the bad packet are delivered, never acknowledged.
            stats.messages_in += len(pending) - before
            self.violation(str(exc), 0x81)
            return
        got = len(pending) - before
        if got:
            stats.messages_in += got
            stats.fast_path_decodes += decoder.fast_publishes - fast0
            stats.slow_path_decodes += decoder.slow_publishes - slow0
            self.pending_bytes += nbytes
            if qos1:
                stats.qos1_in += qos1
                u0 = self.unacked
                u = u0 + qos1
                self.unacked = u
                rm = self.receive_maximum
                if u > rm:
                    # Mosquitto 2.0.11 was seen to send past our receive
                    # maximum: never drop or disconnect, count it.
                    stats.over_receive_maximum += u - max(u0, rm)
                if u > stats.max_unacked:
                    stats.max_unacked = u
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        for packet in controls:
            self.control(packet)
            if self.lost is not None:
                return
        if not self.paused and (self.unacked >= self.receive_maximum or self.pending_bytes >= self.max_buffered):
            self.paused = True
            stats.pauses += 1
            if self.holding is None:
                assert self.transport is not None
                self.transport.pause_reading()
        elif (
            len(data) < _COALESCE_BELOW
            and now - previous_read < self.coalesce_s
            and self.holding is None
            and not self.paused
        ):
            # Small reads back to back: the broker writes one packet per
            # send (Mosquitto does), and waking for each costs more than
            # decoding it. Let the kernel gather them for a moment.
            stats.coalesce_holds += 1
            assert self.transport is not None
            self.transport.pause_reading()
            self.holding = self.loop.call_later(self.coalesce_s, self.end_hold)

    def end_hold(self) -> None:
        self.holding = None
        if not self.paused and self.lost is None and self.transport is not None:
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        w, self.writable = self.writable, None
        if w is not None and not w.done():
            w.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            if exc is None:
                self.lost = ConnectionLost("connection closed by the broker")
            else:
                self.lost = ConnectionLost(f"connection lost: {exc}")
        err = self.lost
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.holding is not None:
            self.holding.cancel()
            self.holding = None
        if not self.connack.done():
            self.connack.set_exception(err)
            self.connack.exception()  # retrieved: no "never retrieved" warning when nobody waits
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # batches() finds ``lost`` and raises it
        for sf in self.subacks.values():
            if not sf.done():
                sf.set_exception(err)
                sf.exception()
        for pf in self.pubacks.values():
            if pf is not None and not pf.done():
                pf.set_exception(err)
                pf.exception()
        self.subacks.clear()
        self.pubacks.clear()
        self.resume_writing()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- control packets ------------------------------------------------------

    def control(self, packet: bytes) -> None:
        try:
            c = codec.decode_control(packet, self.protocol)
        except MalformedPacket as exc:
            self.violation(str(exc), 0x81)
            return
        if isinstance(c, PubAck):
            self.stats.pubacks_in += 1
            f = self.pubacks.pop(c.packet_id, None)
            if f is not None and not f.done():
                f.set_result(c)
        elif isinstance(c, PingResp):
            self.ping_sent_at = None
            self.stats.pongs_received += 1
        elif isinstance(c, SubAck):
            sf = self.subacks.pop(c.packet_id, None)
            if sf is None:
                self.violation(f"SUBACK for unknown packet id {c.packet_id}", 0x82)
            elif not sf.done():
                sf.set_result(c)
        elif isinstance(c, ConnAck):
            if self.connack.done():
                self.violation("a second CONNACK", 0x82)
            else:
                self.connack.set_result(c)
        elif isinstance(c, Disconnect):
            self.lost = DisconnectedByBroker(c.reason_code, c.reason, c.reason_string or "")
            assert self.transport is not None
            self.transport.close()

    def violation(self, detail: str, reason_code: int) -> None:
        """The broker broke the protocol: say so (MQTT 5) and drop the connection."""
        self.lost = ProtocolViolation(f"protocol violation by the broker: {detail}")
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        assert self.transport is not None
        with contextlib.suppress(Exception):
            self.transport.write(codec.encode_disconnect(self.protocol, reason_code))
        self.transport.close()

    # -- helpers for the client ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.lost is not None or self.transport is None:
            raise NotConnected(f"not connected: {self.lost}")
        self.transport.write(data)
        self.last_write = self.loop.time()

    def established(self, connack: ConnAck) -> None:
        ka = connack.server_keep_alive if connack.server_keep_alive is not None else self.client.keepalive_s
        self.keepalive = float(ka)
        self.inflight_out = asyncio.Semaphore(max(1, connack.receive_maximum))
        if ka:
            self.timer = self.loop.call_later(self.keepalive / 4, self.tick)

    def tick(self) -> None:
        """Keepalive: PINGREQ when idle, and a missing PINGRESP ends the connection.

        While reading is paused for flow control the PINGRESP cannot be read,
        so its deadline is suspended; it runs again once acknowledgements
        resume reading."""
        self.timer = None
        if self.lost is not None:
            return
        now = self.loop.time()
        ka = self.keepalive
        if self.ping_sent_at is not None:
            if self.paused:
                self.ping_sent_at = now
            elif now - self.ping_sent_at >= ka:
                self.fail(ConnectionLost(f"no PINGRESP within the keepalive of {ka:g} s"))
                return
        elif now - self.last_write >= ka / 2 or now - self.last_read >= ka:
            self.write(PINGREQ_PACKET)
            self.ping_sent_at = now
            self.stats.pings_sent += 1
        self.timer = self.loop.call_later(ka / 4, self.tick)

    def fail(self, err: MqttError) -> None:
        self.lost = err
        if self.transport is not None:
            self.transport.abort()  # a dead peer takes no DISCONNECT

    def maybe_resume(self) -> None:
        if self.paused and self.unacked < self.receive_maximum and self.pending_bytes < self.max_buffered:
            self.paused = False
            self.stats.resumes += 1
            if self.transport is not None and self.lost is None and self.holding is None:
                self.transport.resume_reading()

    def take(self, max_messages: int, max_bytes: int) -> list[Message]:
        pending = self.pending
        if len(pending) <= max_messages and self.pending_bytes <= max_bytes:
            self.pending = []
            self.pending_bytes = 0
        else:
            size = 0
            k = 0
            for m in pending:
                s = len(m.payload)
                if k and (k >= max_messages or size + s > max_bytes):
                    break
                size += s
                k += 1
            batch = pending[:k]
            del pending[:k]
            self.pending_bytes -= size
            pending = batch
        if self.paused:
            self.maybe_resume()
        return pending

    def allocate_pid(self) -> int:
        pid = self.next_pid
        for _ in range(0xFFFF):
            pid = pid % 0xFFFF + 1
            if pid not in self.pubacks and pid not in self.subacks:
                self.next_pid = pid
                return pid
        raise MqttError("all 65,535 packet ids are in flight")  # pragma: no cover


class MqttClient:
    """An MQTT 5 or 3.1.1 client for one persistent session.

    See the package docstring for the model (flow control, acknowledgement
    order, reconnecting). ``receive_maximum`` is both what CONNECT announces
    (MQTT 5) and the client's own limit of unacknowledged QoS 1 messages at
    which it pauses reading. ``max_buffered_bytes`` bounds the payload bytes
    received but not yet handed out by :meth:`batches`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str = "",
        password: str = "",
        tls: bool = False,
        ca_file: str = "",
        keepalive_s: int = 30,
        clean_start: bool = False,
        session_expiry_s: int = 3600,
        receive_maximum: int = 10000,
        protocol: int = 5,
        connect_timeout_s: float = 10.0,
        max_packet_bytes: int = 1 << 20,
        max_buffered_bytes: int = 16 << 20,
        read_coalesce_s: float = 0.001,
    ) -> None:
        if protocol not in (PROTOCOL_V311, PROTOCOL_V5):
            raise ValueError(f"protocol must be 5 or 4 (= 3.1.1), not {protocol}")
        if not 1 <= receive_maximum <= 0xFFFF:
            raise ValueError("receive_maximum must be 1..65535")
        if not 0 <= keepalive_s <= 0xFFFF:
            raise ValueError("keepalive_s must be 0..65535")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self.password = password
        self.tls = tls
        self.ca_file = ca_file
        self.keepalive_s = keepalive_s
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.protocol = protocol
        self.connect_timeout_s = connect_timeout_s
        self.max_packet_bytes = max_packet_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.read_coalesce_s = read_coalesce_s
        self.stats = Stats()
        self._conn: _Connection | None = None

    # -- connection ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        c = self._conn
        return c is not None and c.lost is None

    @property
    def reading_paused(self) -> bool:
        """True while reading is paused for flow control."""
        c = self._conn
        return c is not None and c.paused

    @property
    def unacked(self) -> int:
        """QoS 1 messages received on this connection and not acknowledged."""
        c = self._conn
        return c.unacked if c is not None else 0

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        return ctx

    async def connect(self) -> bool:
        """Open the connection and the session; returns session_present.

        Raises :class:`ConnectRefused` (reason code and name), :class:`MqttTimeout`,
        or :class:`ConnectionLost` (TCP or TLS failure, or closed before CONNACK).
        Call it again after any :class:`MqttError` to reconnect."""
        if self.connected:
            raise MqttError("already connected")
        loop = asyncio.get_running_loop()
        conn = _Connection(self, loop)
        packet = codec.encode_connect(
            self.protocol,
            client_id=self.client_id,
            username=self.username,
            password=self.password,
            keepalive_s=self.keepalive_s,
            clean_start=self.clean_start,
            session_expiry_s=self.session_expiry_s,
            receive_maximum=self.receive_maximum,
            max_packet_bytes=self.max_packet_bytes,
        )
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self._ssl_context() if self.tls else None,
                    server_hostname=self.host if self.tls else None,
                )
                conn.write(packet)
                connack = await conn.connack
        except TimeoutError:
            if conn.transport is not None:
                conn.fail(MqttTimeout("no CONNACK"))
            raise MqttTimeout(f"no CONNACK from {self.host}:{self.port} within {self.connect_timeout_s:g} s") from None
        except OSError as exc:  # refused, unreachable, TLS failure (ssl.SSLError is an OSError)
            if conn.transport is not None:
                conn.transport.abort()
            raise ConnectionLost(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        if connack.reason_code:
            conn.fail(ConnectionLost("connection refused"))
            raise ConnectRefused(connack.reason_code, connack.reason, connack.reason_string or "")
        conn.established(connack)
        self._conn = conn
        self.stats.connects += 1
        return connack.session_present

    def _live(self) -> _Connection:
        c = self._conn
        if c is None:
            raise NotConnected("not connected")
        if c.lost is not None:
            raise NotConnected(f"not connected: {c.lost}")
        return c

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        """SUBSCRIBE and wait for the SUBACK (up to ``connect_timeout_s``).
        Raises :class:`SubscribeRefused` naming each refused filter."""
        if isinstance(filters, str):
            raise TypeError("filters is a sequence of topic filters, not one string")
        c = self._live()
        pid = c.allocate_pid()
        packet = codec.encode_subscribe(self.protocol, pid, filters, qos)  # ValueError for an invalid filter (v5)
        f: asyncio.Future[SubAck] = c.loop.create_future()
        c.subacks[pid] = f
        c.write(packet)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                suback = await f
        except TimeoutError:
            raise MqttTimeout(f"no SUBACK within {self.connect_timeout_s:g} s") from None
        if len(suback.reason_codes) != len(filters):
            c.violation("SUBACK with a different number of reason codes than filters", 0x82)
            raise ProtocolViolation("SUBACK with a different number of reason codes than filters")
        refused = {t: code for t, code in zip(filters, suback.reason_codes, strict=True) if code >= 0x80}
        if refused:
            raise SubscribeRefused(refused)

    async def close(self) -> None:
        """DISCONNECT (the session stays for ``session_expiry_s``) and close.

        Gracefully: after the DISCONNECT the client half-closes and waits (up to
        2 s) for the broker to close, reading and discarding what still
        arrives. Closing at once lost PUBACKs written just before: with
        Mosquitto 2.0.11, 300 PUBACKs in one write, then DISCONNECT and an
        immediate close, had 100-200 of them redelivered on the next connect
        (the broker had not processed them; why it drops them was not pinned
        down). With the half-close none was, in every trial."""
        c = self._conn
        if c is None:
            return
        t = c.transport
        if c.lost is None and t is not None:
            with contextlib.suppress(MqttError):
                c.write(codec.encode_disconnect(self.protocol))
            c.lost = ConnectionLost("closed by the client")
            if c.holding is not None:
                c.holding.cancel()
                c.holding = None
            c.paused = False
            t.resume_reading()  # to see the broker's end of the stream (what comes is dropped)
            if t.can_write_eof():
                t.write_eof()
            # else (TLS): the broker closes the connection after DISCONNECT
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.shield(c.closed)
        if t is not None and not c.closed.done():
            t.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.shield(c.closed)

    async def __aenter__(self) -> MqttClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- receiving -----------------------------------------------------------

    async def batches(self, *, max_messages: int = 5000, max_bytes: int = 1 << 20) -> AsyncIterator[list[Message]]:
        """Yield what has been received, in order, at most ``max_messages``
        messages and ``max_bytes`` payload bytes a batch (at least one
        message). Bound to the current connection: when it ends, what was
        already received is still yielded, then the reason is raised as an
        :class:`MqttError` (:class:`ConnectionLost` or a subclass)."""
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be positive")
        c = self._conn
        if c is None:
            raise NotConnected("not connected")
        while True:
            if c.pending:
                yield c.take(max_messages, max_bytes)
                continue
            if c.lost is not None:
                raise c.lost
            waiter = c.waiter = c.loop.create_future()
            try:
                await waiter
            finally:
                c.waiter = None

    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge the QoS 1 messages among ``messages``: PUBACKs in the
        given order, in one transport write.

        Pass messages in the order :meth:`batches` yielded them (MQTT requires
        PUBACKs in the order of the PUBLISHes), each once, and only those of the
        current connection. Without a connection this does nothing but count
        them in ``stats.acks_dropped``: the broker redelivers them."""
        # One pass: each QoS 1 message becomes its 4-byte PUBACK as one int.
        words = [0x40020000 | m.packet_id for m in messages if m.qos]
        n = len(words)
        if not n:
            return
        c = self._conn
        if c is None or c.lost is not None or c.transport is None:
            self.stats.acks_dropped += n
            return
        c.transport.write(codec.pack_pubacks(words))
        c.last_write = c.loop.time()
        c.unacked = c.unacked - n if c.unacked > n else 0
        stats = self.stats
        stats.acks_sent += n
        stats.ack_writes += 1
        if c.paused:
            c.maybe_resume()

    # -- publishing ------------------------------------------------------------

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, retain: bool = False, timeout_s: float = 10.0
    ) -> None:
        """PUBLISH each (topic, payload) with QoS 0, in order, in one transport
        write (a batch's dead letters: a flood of malformed messages must not
        cost a system call each). Returns once written, waiting while the
        transport's buffer is full; the errors are those of :meth:`publish`."""
        c = self._live()
        if not messages:
            return
        protocol = self.protocol
        data = b"".join(codec.encode_publish(protocol, t, p, 0, 0, retain) for t, p in messages)
        try:
            async with asyncio.timeout(timeout_s):
                while c.writable is not None:
                    await asyncio.shield(c.writable)
        except TimeoutError:
            raise MqttTimeout(f"transport still full after {timeout_s:g} s") from None
        c.write(data)
        self.stats.publishes_out += len(messages)
        self.stats.publish_writes += 1

    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False, timeout_s: float = 10.0
    ) -> None:
        """PUBLISH. QoS 0 returns once written (waiting while the transport's
        buffer is full); QoS 1 waits for the PUBACK and raises
        :class:`MqttTimeout` after ``timeout_s``, :class:`PublishRefused` for a
        failure reason code, :class:`NotConnected` without a connection and
        :class:`ConnectionLost` when the connection ends meanwhile."""
        if qos == 0:
            await self.publish_many([(topic, payload)], retain=retain, timeout_s=timeout_s)
            return
        c = self._live()
        if qos != 1:
            raise ValueError("this client publishes with QoS 0 or 1")
        assert c.inflight_out is not None
        pid = 0
        try:
            async with asyncio.timeout(timeout_s):
                async with c.inflight_out:  # the broker's receive maximum
                    c = self._live()
                    pid = c.allocate_pid()
                    f: asyncio.Future[PubAck] = c.loop.create_future()
                    c.pubacks[pid] = f
                    c.write(codec.encode_publish(self.protocol, topic, payload, 1, pid, retain))
                    self.stats.publishes_out += 1
                    puback = await f
        except TimeoutError:
            if pid and c.pubacks.get(pid) is not None:
                c.pubacks[pid] = None  # keep the id reserved until its PUBACK comes
            raise MqttTimeout(f"no PUBACK for {topic!r} within {timeout_s:g} s") from None
        if puback.reason_code >= 0x80:
            raise PublishRefused(puback.reason_code, puback.reason)
