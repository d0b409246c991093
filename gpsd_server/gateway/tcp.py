"""JT/T 808 TCP gateway: terminals in, EMQX-shaped JSON out to MQTT, commands back.

Terminals (2011, 2013 and 2019 editions) connect over TCP; each decoded
message is published to ``jt808/{phone}/{phone}/up`` in the JSON shape of
the EMQX JT/T 808 gateway, so the server decodes both with ``decode_jt808``.
The protocol lives in ``core.jt808.session``; this module only moves bytes,
applies the limits below, counts, and logs once per interval.

Nothing a terminal (or anyone else) sends can stop the gateway or starve
the event loop:

* at most ``max_connections`` connections, clamped at start to the
  descriptors the process has (``RLIMIT_NOFILE`` raised towards what is
  needed, minus ``fd_reserve`` and a quarter for HTTP, the database and the
  broker), and ``max_connections_per_address`` per peer address; past either
  a new connection is closed at once and counted (``refused_total_limit``,
  ``refused_address_limit``);
* a connection must authenticate within ``auth_timeout_s``
  (``closed_auth_timeout``); after that only valid frames keep it open
  (``idle_timeout_s``, ``closed_idle_timeout``); more than
  ``max_garbage_bytes`` without a valid frame closes it (``closed_garbage``),
  so does more than ``max_bad_frames`` bad frames (``closed_bad_frames``);
* reading is in chunks of ``read_chunk_bytes`` and the connection yields to
  the loop after each, so a flood on one socket costs the others nothing;
  subpackaged messages are buffered only after authentication, within
  ``max_reassembly_bytes``.

``counters`` holds every outcome (``gpsd_jt808_gateway_events{reason}`` on
/metrics): accepted messages by name, ``dropped_<reason>``,
``tolerated_<quirk>``, ``refused_*``, ``closed_*``, ``publish_failed``,
``commands_sent``, ``commands_acked``.

Standalone (publishes through aiomqtt, reconnecting with jittered backoff,
and sends what is published on EMQX's downlink topic ``.../dn``)::

    python -m gpsd_server.gateway.tcp --mqtt-host 127.0.0.1 --mqtt-port 18830 --port 7611
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt
import msgspec

from gpsd_server.backoff import Backoff
from gpsd_server.core.decode.jt808 import normalize_phone
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808.session import Ack, Jt808Session, Outcome
from gpsd_server.gateway.guard import AddressBook, EventLog, connection_budget, raise_descriptor_limit
from gpsd_server.gateway.health import TerminalHealth, TerminalRecord, TerminalRegistry
from gpsd_server.settings import Jt808Settings

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 2.0  # a closing connection's buffered bytes get this long to drain

Publish = Callable[[str, bytes], Awaitable[None]]
AckHandler = Callable[[str, str, Ack], None]  # phone, connection id, ack
DisconnectHandler = Callable[[str, str], None]  # phone, connection id
_ids = itertools.count(1)


@dataclass(eq=False)
class Connection:
    """One terminal connection as the gateway holds it."""

    id: str
    session: Jt808Session
    writer: asyncio.StreamWriter
    peer: str
    address: str
    record: TerminalRecord | None = None


class Jt808Gateway:
    """An asyncio TCP server; ``counters`` holds every outcome by reason."""

    def __init__(
        self,
        publish: Publish,
        settings: Jt808Settings | None = None,
        *,
        registry: TerminalRegistry | None = None,
        health: TerminalHealth | None = None,
        on_ack: AckHandler | None = None,
        on_disconnect: DisconnectHandler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publish = publish
        self.settings = s = settings or Jt808Settings()
        self.registry = registry
        self.health = health
        self.on_ack, self.on_disconnect = on_ack, on_disconnect
        self._clock = clock
        self.counters: Counter[str] = Counter()
        self.events = EventLog(log, s.error_log_interval_s)
        self.max_connections = s.max_connections
        self._addresses = AddressBook(min(s.max_connections_per_address, s.max_connections))
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: dict[asyncio.Task[None], Connection] = {}
        self._by_phone: dict[str, Connection] = {}  # normalised phone -> the connection it authenticated on
        self._housekeeping: asyncio.Task[None] | None = None
        self._traceback_at = -1e18

    @property
    def port(self) -> int:
        """The bound port (useful after ``start(host, 0)``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("gateway not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._tasks)

    def online(self, phone: str) -> bool:
        """Whether a terminal can be sent a command now (authenticated here)."""
        conn = self._by_phone.get(normalize_phone(phone))
        return conn is not None and conn.session.admitted

    def online_phones(self) -> list[str]:
        return [phone for phone, conn in self._by_phone.items() if conn.session.admitted]

    async def start(self, host: str, port: int) -> None:
        s = self.settings
        soft, _ = raise_descriptor_limit(s.max_connections + max(s.fd_reserve, 1024))
        self.max_connections = connection_budget(s, soft)
        self._addresses.per_address = min(s.max_connections_per_address, self.max_connections)
        if self.max_connections < s.max_connections:
            log.warning(
                "jt808 gateway: max_connections %d lowered to %d to stay within the descriptor limit %d "
                "(raise `ulimit -n` to allow more)", s.max_connections, self.max_connections, soft,
            )  # fmt: skip
        # A backlog for the reconnect storm after a network outage (the kernel caps it at somaxconn).
        backlog = min(4096, max(128, self.max_connections // 8))
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=2 * s.read_chunk_bytes, backlog=backlog
        )
        self._housekeeping = asyncio.create_task(self._flush_logs(), name="jt808-log-flush")
        log.info(
            "jt808 gateway listening on %s:%s (at most %d connections, %d per address)",
            host, self.port, self.max_connections, self._addresses.per_address,
        )  # fmt: skip

    async def serve(self, host: str, port: int) -> None:
        """Start and serve until cancelled, then close every connection."""
        await self.start(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await self._server.wait_closed()
        self.events.flush()

    async def send(self, phone: str, command: dl.Command, *, sn: int | None = None) -> tuple[int, str] | None:
        """Write a command to the terminal's connection: (sequence number,
        connection id), or ``None`` when it is not connected and authenticated."""
        conn = self._by_phone.get(normalize_phone(phone))
        if conn is None:
            return None
        sent = conn.session.command(command, self._clock(), sn=sn)
        if sent is None:
            return None
        sn, frame = sent
        conn.writer.write(frame)
        async with asyncio.timeout(self.settings.write_timeout_s):
            await conn.writer.drain()
        self.counters["commands_sent"] += 1
        return sn, conn.id

    # -- one connection -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each callback in a task
        peer = _peer_name(writer)
        address = peer.rsplit(":", 1)[0]
        if len(self._tasks) >= self.max_connections:
            self._refuse(writer, "total_limit", address)
            return
        if not self._addresses.admit(address):
            self._refuse(writer, "address_limit", address)
            return
        self._tasks.add(task)
        conn = Connection(f"tcp:{next(_ids)}", Jt808Session(self.settings, now=self._clock(), known=self._known()),
                          writer, peer, address)  # fmt: skip
        self._connections[task] = conn
        reason = "closed"
        try:
            reason = await self._converse(reader, conn)
        except asyncio.CancelledError:
            # Closing the gateway. This is the task's outermost frame, and
            # asyncio's stream callback (3.11) logs a cancelled task as an error.
            reason = "shutdown"
        except (ConnectionError, TimeoutError) as exc:
            reason = "connection_lost"
            log.debug("jt808 %s: connection lost: %s", peer, exc)
        except Exception as exc:  # a bug must cost one connection, never the gateway
            reason = "internal_error"
            self.counters["internal_error"] += 1
            self.events.event("internal_error", conn.session.phone or peer, repr(exc)[:200], logging.ERROR)
            now = time.monotonic()
            if now - self._traceback_at >= self.settings.error_log_interval_s:  # one traceback per interval
                self._traceback_at = now
                log.exception("jt808 %s: internal error, closing the connection", peer)
        finally:
            self._forget(task, conn, reason)
            writer.close()
            # A peer that stops reading must not hold the gateway's close (or
            # the server's shutdown): after a bounded wait the socket is aborted.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()
            writer.transport.abort()  # a no-op once closed

    def _refuse(self, writer: asyncio.StreamWriter, why: str, address: str) -> None:
        self.counters[f"refused_{why}"] += 1
        self.events.event(f"refused {why}", address, f"limit {self.max_connections} / {self._addresses.per_address}")
        writer.close()

    def _known(self) -> Callable[[str], bool] | None:
        if self.registry is None or not self.settings.check_registry:
            return None
        return self.registry.known

    def _forget(self, task: asyncio.Task[None], conn: Connection, reason: str) -> None:
        self._tasks.discard(task)
        self._connections.pop(task, None)
        self._addresses.release(conn.address)
        phone = conn.session.phone
        if phone is None:
            return
        key = normalize_phone(phone)
        newer = self._by_phone.get(key)
        if newer is conn:
            del self._by_phone[key]
        if self.on_disconnect is not None:
            self.on_disconnect(key, conn.id)  # commands sent on this connection go out again
        if conn.record is not None and self.health is not None and newer in (None, conn):
            self.health.detach(conn.record, reason, self._clock())

    async def _converse(self, reader: asyncio.StreamReader, conn: Connection) -> str:
        session = conn.session
        self.counters["connections"] += 1
        chunk = self.settings.read_chunk_bytes
        while True:
            deadline, why = session.deadline()
            left = deadline - self._clock()
            if left <= 0:
                self.counters[f"closed_{why}"] += 1
                self.events.event(f"closed {why}", session.phone or conn.peer, level=logging.INFO)
                return why
            try:
                async with asyncio.timeout(left):
                    data = await reader.read(chunk)
            except TimeoutError:
                continue  # the deadline decides (it may have moved)
            now = self._clock()
            outcomes = session.receive(data, now) if data else session.eof()
            self._track(conn, outcomes, now)
            for outcome in outcomes:
                await self._perform(outcome, conn)
                if outcome.close:
                    self.counters[f"closed_{outcome.close}"] += 1
                    self.events.event(f"closed {outcome.close}", session.phone or conn.peer, outcome.detail)
                    return outcome.close
            if not data:
                return "eof"
            # Yield after every chunk: reads that find data buffered return
            # without suspending, so a flooding socket would hold the loop.
            await asyncio.sleep(0)

    def _track(self, conn: Connection, outcomes: list[Outcome], now: float) -> None:
        session = conn.session
        if session.phone is None:
            return
        if self.health is not None:
            if conn.record is None:
                conn.record = self.health.attach(session, conn.peer, now)
            if conn.record is not None:
                self.health.update(conn.record, session, outcomes, now)
        if session.admitted:
            key = normalize_phone(session.phone)
            if self._by_phone.get(key) is not conn:
                self._by_phone[key] = conn  # the newest connection of a phone gets its commands

    async def _perform(self, outcome: Outcome, conn: Connection) -> None:
        phone = conn.session.phone
        if outcome.dropped:
            self.counters[f"dropped_{outcome.reason}"] += 1
            self.events.event(f"dropped {outcome.reason}", phone or conn.peer, outcome.detail)
        else:
            self.counters[outcome.reason] += 1
        for quirk in outcome.tolerated:
            self.counters[f"tolerated_{quirk}"] += 1
        if outcome.ack is not None:
            self.counters["commands_acked"] += 1
            if self.on_ack is not None and phone is not None:
                self.on_ack(normalize_phone(phone), conn.id, outcome.ack)
        reply = outcome.reply
        if outcome.publish is not None:
            topic, payload = outcome.publish
            try:
                async with asyncio.timeout(self.settings.publish_timeout_s):
                    await self.publish(topic, payload)
            except Exception as exc:  # noqa: BLE001 - any failure: the terminal is told and sends it again
                self.counters["publish_failed"] += 1
                self.events.event("publish_failed", phone or conn.peer, repr(exc)[:200])
                reply = outcome.reply_if_publish_fails
        if reply is not None:
            conn.writer.write(reply)
            async with asyncio.timeout(self.settings.write_timeout_s):
                await conn.writer.drain()

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(self.settings.error_log_interval_s)
            self.events.flush()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class MqttPublisher:
    """Publishes through aiomqtt, reconnecting with jittered backoff; hands
    what arrives on ``{prefix}/+/+/dn`` (EMQX's downlink JSON) to ``downlink``.

    While the broker is away ``publish`` raises at once: the gateway then
    answers positions with "failure" and the terminals keep them for a
    later 0x0704 backfill, rather than the gateway buffering without bound.
    """

    def __init__(
        self, host: str, port: int, *, client_id: str = "gpsd-jt808-gateway", qos: int = 1,
        downlink_topic: str | None = None, downlink: Callable[[str, bytes], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self.host, self.port, self.client_id, self.qos = host, port, client_id, qos
        self.downlink_topic, self.downlink = downlink_topic, downlink
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()  # set while the broker is connected

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._client is None:
            raise ConnectionError("MQTT broker not connected")
        await self._client.publish(topic, payload, qos=self.qos)

    async def run(self, backoff_min_s: float = 0.5, backoff_max_s: float = 30.0) -> None:
        backoff = Backoff(backoff_min_s, backoff_max_s)
        while True:
            wait = 0.0
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id) as client:
                    self._client = client
                    backoff.reset()
                    self.connected.set()
                    log.info("jt808 gateway connected to MQTT %s:%s", self.host, self.port)
                    if self.downlink_topic and self.downlink is not None:
                        await client.subscribe(self.downlink_topic, qos=1)
                    async for message in client.messages:  # ends with MqttError on disconnect
                        if self.downlink is not None and isinstance(message.payload, bytes):
                            await self.downlink(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                wait = backoff.next()
                log.warning("MQTT %s:%s unavailable (%s), retrying in %.1f s", self.host, self.port, exc, wait)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(wait or backoff.next())


class Downlinks:
    """EMQX's downlink JSON (``{prefix}/{clientid}/{phone}/dn``) into commands
    for the terminals on this gateway: the standalone gateway stands in for
    EMQX's both ways."""

    def __init__(self, gateway: Jt808Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        try:
            doc = msgspec.json.decode(payload)
            head = doc["header"]
            command = dl.command_from_json(int(head["msg_id"]), doc.get("body") or {})
            sn = head.get("msg_sn")  # EMQX 5.9+ uses a given sequence number; so do we
            sn = int(sn) if isinstance(sn, int) and not isinstance(sn, bool) else None
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            self.gateway.counters["dropped_downlink"] += 1
            self.gateway.events.event("dropped downlink", topic, repr(exc)[:200])
            return
        if len(parts) < 3 or await self.gateway.send(parts[-2], command, sn=sn) is None:
            self.gateway.counters["dropped_downlink_offline"] += 1
            self.gateway.events.event("dropped downlink_offline", topic, level=logging.INFO)


async def _main(args: argparse.Namespace) -> None:
    defaults = Jt808Settings()
    settings = Jt808Settings(
        auth_code=args.auth_code, topic_prefix=args.topic_prefix, idle_timeout_s=args.idle_timeout,
        auth_timeout_s=args.auth_timeout, max_connections=args.max_connections,
        max_connections_per_address=args.max_per_address or defaults.max_connections_per_address,
    )  # fmt: skip
    gateway_ref: list[Jt808Gateway] = []

    async def downlink(topic: str, payload: bytes) -> None:
        await Downlinks(gateway_ref[0])(topic, payload)

    publisher = MqttPublisher(
        args.mqtt_host, args.mqtt_port, downlink_topic=f"{settings.topic_prefix}/+/+/dn", downlink=downlink
    )
    gateway = Jt808Gateway(publisher.publish, settings)
    gateway_ref.append(gateway)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(publisher.run(), name="mqtt")
        tasks.create_task(gateway.serve(args.host, args.port), name="jt808")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpsd_server.gateway.tcp", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0", help="address terminals connect to (default all)")
    parser.add_argument("--port", type=int, default=7611)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    defaults = Jt808Settings()
    parser.add_argument("--auth-code", default=defaults.auth_code, help='"" accepts any code')
    parser.add_argument("--topic-prefix", default=defaults.topic_prefix)
    parser.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout_s, help="seconds")
    parser.add_argument("--auth-timeout", type=float, default=defaults.auth_timeout_s, help="seconds")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)
    parser.add_argument("--max-per-address", type=int, default=defaults.max_connections_per_address)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
