"""JT/T 808 TCP gateway: terminals in, EMQX-shaped JSON out to MQTT.

Terminals (2013 and 2019 editions) connect over TCP; each decoded message is
published to ``jt808/{phone}/{phone}/up`` in the JSON shape of the EMQX
JT/T 808 gateway, so the server decodes both with ``decode_jt808``. The
protocol lives in ``core.jt808.session``; this module only moves bytes, applies
timeouts and limits, counts, and logs.

Nothing a terminal sends can stop the gateway: every connection runs in its
own task, bad frames are answered or dropped with a counted reason, and a
connection that sends too many bad frames, or nothing for ``idle_timeout_s``,
is closed.

Standalone (publishes through aiomqtt, reconnecting with jittered backoff)::

    python -m gpsd_server.gateway.tcp --mqtt-host 127.0.0.1 --mqtt-port 18830 --port 7611
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import aiomqtt

from gpsd_server.backoff import Backoff
from gpsd_server.core.jt808.session import Jt808Session, Outcome
from gpsd_server.settings import Jt808Settings

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]
READ_CHUNK = 4096


class Jt808Gateway:
    """An asyncio TCP server; ``counters`` holds every outcome by reason."""

    def __init__(self, publish: Publish, settings: Jt808Settings | None = None) -> None:
        self.publish = publish
        self.settings = settings or Jt808Settings()
        self.counters: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful after ``start(host, 0)``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("gateway not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)
        log.info("jt808 gateway listening on %s:%s", host, self.port)

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
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each callback in a task
        if len(self._connections) >= self.settings.max_connections:
            self.counters["connection_refused"] += 1
            writer.close()
            return
        self._connections.add(task)
        peer = _peer_name(writer)
        try:
            await self._converse(reader, writer, peer)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("jt808 %s: connection lost: %s", peer, exc)
        except Exception:  # a bug must cost one connection, never the gateway
            self.counters["internal_error"] += 1
            log.exception("jt808 %s: internal error, closing the connection", peer)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        session = Jt808Session(self.settings)
        self.counters["connections"] += 1
        while True:
            try:
                async with asyncio.timeout(self.settings.idle_timeout_s):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                self.counters["idle_timeout"] += 1
                idle = self.settings.idle_timeout_s
                log.info("jt808 %s phone=%s: idle for %.0f s, closing", peer, session.phone, idle)
                return
            outcomes = session.receive(data) if data else session.eof()
            for outcome in outcomes:
                await self._perform(outcome, writer, peer, session.phone)
                if outcome.close:
                    self.counters["closed_bad_frames"] += 1
                    log.warning("jt808 %s phone=%s: too many bad frames, closing", peer, session.phone)
                    return
            if not data:
                return

    async def _perform(self, outcome: Outcome, writer: asyncio.StreamWriter, peer: str, phone: str | None) -> None:
        self.counters[outcome.reason] += 1
        if outcome.is_error or outcome.reason in ("unsupported", "unauthenticated", "auth_failed", "phone_changed"):
            log.warning("jt808 %s phone=%s: %s %s", peer, phone, outcome.reason, outcome.detail)
        reply = outcome.reply
        if outcome.publish is not None:
            topic, payload = outcome.publish
            try:
                async with asyncio.timeout(self.settings.publish_timeout_s):
                    await self.publish(topic, payload)
            except Exception as exc:  # noqa: BLE001 - any failure: the terminal is told and sends it again
                self.counters["publish_failed"] += 1
                log.warning("jt808 %s phone=%s: publish failed: %r", peer, phone, exc)
                reply = outcome.reply_if_publish_fails
        if reply is not None:
            writer.write(reply)
            async with asyncio.timeout(self.settings.write_timeout_s):
                await writer.drain()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class MqttPublisher:
    """Publishes through aiomqtt, reconnecting with jittered backoff.

    While the broker is away ``publish`` raises at once: the gateway then
    answers positions with "failure" and the terminals keep them for a
    later 0x0704 backfill, rather than the gateway buffering without bound.
    """

    def __init__(self, host: str, port: int, *, client_id: str = "gpsd-jt808-gateway", qos: int = 1) -> None:
        self.host, self.port, self.client_id, self.qos = host, port, client_id, qos
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
                    async for _ in client.messages:  # ends with MqttError on disconnect
                        pass
            except aiomqtt.MqttError as exc:
                wait = backoff.next()
                log.warning("MQTT %s:%s unavailable (%s), retrying in %.1f s", self.host, self.port, exc, wait)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(wait or backoff.next())


async def _main(args: argparse.Namespace) -> None:
    publisher = MqttPublisher(args.mqtt_host, args.mqtt_port)
    settings = Jt808Settings(auth_code=args.auth_code, topic_prefix=args.topic_prefix, idle_timeout_s=args.idle_timeout)
    gateway = Jt808Gateway(publisher.publish, settings)
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
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
