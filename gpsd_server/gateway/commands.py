"""Commands to JT/T 808 terminals: the queue in the database, the way out,
the answers back; and the terminals' health written for the API.

The API only inserts rows (``store.commands.enqueue``). This driver, one
named task of the server, takes queued commands for terminals it can reach,
claims each (``queued`` -> ``sent``) and writes it:

* through our TCP gateway when the terminal is connected and authenticated
  there (the answer, 0x0001 or 0x0201, comes back on that connection and is
  matched by sequence number);
* else, with ``[jt808] downlink_mqtt = true``, through EMQX's gateway: the
  EMQX downlink JSON on ``{prefix}/{clientid}/{phone}/dn``, for a terminal
  seen on ``.../up`` within ``mqtt_online_s``. EMQX publishes the answer to a
  position query (0x0201), which :meth:`observe` matches; it consumes the
  terminal's 0x0001 itself, so a text message or a parameter change sent
  through EMQX ends as ``sent`` (``ack_observable`` false: it never times out).

A command waits in the queue while its terminal is unreachable (across
reconnects and restarts) for ``command_expire_s`` (then ``failed``). Sent
and unanswered for ``command_ack_timeout_s``, or sent on a connection that
closed, it goes out again, up to ``command_max_attempts`` (then
``timed_out``). A terminal's answer with a non-zero result is ``failed``.

Database outages are logged once per interval and retried; answers that
arrive meanwhile are kept (bounded) and written once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec
import psycopg

from gpsd_server.backoff import Backoff
from gpsd_server.core.decode.jt808 import normalize_phone
from gpsd_server.core.jt808 import bodies
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808.frame import Edition
from gpsd_server.core.jt808.session import Ack
from gpsd_server.gateway.guard import EventLog
from gpsd_server.gateway.health import TerminalHealth, TerminalRegistry
from gpsd_server.gateway.tcp import Jt808Gateway
from gpsd_server.settings import Jt808Settings
from gpsd_server.store import commands as store
from gpsd_server.store.db import DB_ERRORS, Database

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]
# Uplinks that answer a command, as their JSON starts: 0x0001 (gateways
# other than EMQX publish it), 0x0201 (EMQX publishes it).
_ANSWER = re.compile(rb'"msg_id"\s*:\s*(1|513)\s*[,}]')
_MAX_PENDING = 10_000
# Through EMQX only the position query's answer is published.
_MQTT_OBSERVABLE = frozenset((dl.POSITION_QUERY,))


class Received(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class TerminalCommands:
    def __init__(
        self,
        *,
        db: Database,
        settings: Jt808Settings,
        registry: TerminalRegistry,
        health: TerminalHealth,
        gateway: Jt808Gateway | None = None,
        publish: Publish | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db, self.settings, self.registry, self.health = db, settings, registry, health
        self.gateway, self.publish = gateway, publish
        self._clock = clock
        self.counters: Counter[str] = Counter()
        self.events = EventLog(log, settings.error_log_interval_s)
        self._answers: deque[tuple[str, Sequence[int], int | None, int, str | None, str | None]] = deque(
            maxlen=_MAX_PENDING
        )
        self._gone: deque[tuple[str, str]] = deque(maxlen=_MAX_PENDING)
        self._wake = asyncio.Event()
        self._restored = False
        self._health_at = 0.0
        self._conn: psycopg.AsyncConnection[Any] | None = None  # its own, not one of the API's pool

    # -- what the gateway and ingest tell us (synchronous, cheap) --------------------

    def acked(self, phone: str, connection: str, ack: Ack) -> None:
        """The gateway's ``on_ack``: an answer on a TCP connection."""
        self._answers.append((phone, (ack.msg_id,), ack.sn, ack.result, connection, "tcp"))
        self._wake.set()

    def disconnected(self, phone: str, connection: str) -> None:
        """The gateway's ``on_disconnect``."""
        self._gone.append((phone, connection))
        self._wake.set()

    def observe(self, messages: Sequence[Received]) -> None:
        """Every batch ingest takes from the broker: note which terminals EMQX
        has (their last uplink) and pick out answers to our commands."""
        prefix = self.settings.topic_prefix + "/"
        now = self._clock()
        for msg in messages:
            topic = msg.topic
            if not topic.startswith(prefix) or not topic.endswith("/up"):
                continue
            parts = topic[len(prefix) :].split("/")
            if len(parts) != 3:
                continue
            clientid, phone = parts[0], parts[1]
            if self.health.seen_via_mqtt(clientid, phone, now) is None:
                continue
            if _ANSWER.search(msg.payload):  # EMQX writes "body" before "header"
                self._mqtt_answer(phone, msg.payload)

    def _mqtt_answer(self, phone: str, payload: bytes) -> None:
        try:
            doc = msgspec.json.decode(payload)
            msg_id, body = int(doc["header"]["msg_id"]), doc["body"]
            if msg_id == 1:
                ids: Sequence[int] = (int(body["id"]),)
                seq, result = int(body["seq"]), int(body["result"])
            else:
                ids, seq, result = bodies.ANSWERS[msg_id], int(body["seq"]), 0
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            return
        self._answers.append((normalize_phone(phone), ids, seq, result, None, "mqtt"))
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._drop_connection()

    async def _loop(self) -> None:
        backoff = Backoff(self.settings.command_poll_s, 30.0)
        await self.db.wait_ready()
        while True:
            try:
                await self.cycle()
                backoff.reset()
                wait = self.settings.command_poll_s
            except (psycopg.Error, *DB_ERRORS) as exc:
                await self._drop_connection()
                wait = backoff.next()
                self.counters["commands_database_errors"] += 1
                self.events.event("commands: database unavailable", detail=str(exc).strip().splitlines()[0][:200])
            self.events.flush()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await self.db.direct()
            await self._conn.set_autocommit(True)  # every statement stands alone: nothing half-done is lost
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def close(self) -> None:
        await self._drop_connection()

    async def cycle(self) -> None:
        """One pass: answers and closed connections, timeouts, delivery, health."""
        conn = await self._connection()
        if not self._restored:
            self.health.restore(await store.health_for_restore(conn))
            self._restored = True
        await self._record_answers(conn)
        while self._gone:
            phone, connection = self._gone[0]
            n = await store.requeue_connection(
                conn, phone=phone, connection=connection, max_attempts=self.settings.command_max_attempts
            )
            self.counters["commands_requeued"] += n
            self._gone.popleft()
        self.counters["commands_expired"] += await store.expire(
            conn, ack_timeout_s=self.settings.command_ack_timeout_s, queue_s=self.settings.command_expire_s,
            max_attempts=self.settings.command_max_attempts,
        )  # fmt: skip
        await self._deliver(conn)
        now = self._clock()
        if now - self._health_at >= self.settings.health_flush_s:
            changed = self.health.changed()
            rows = [r.row() for r in changed]
            for rec in changed:  # before the write: updates made meanwhile stay dirty
                rec.dirty = False
            try:
                if rows:
                    await store.save_health(conn, rows)
            except BaseException:
                for rec in changed:
                    rec.dirty = True
                raise
            self._health_at = now

    async def _record_answers(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while self._answers:
            phone, ids, sn, result, connection, transport = self._answers[0]
            found = await store.answered(
                conn, phone=phone, msg_ids=ids, msg_sn=sn, result=result, connection=connection, transport=transport
            )
            self.counters["commands_answered" if found is not None else "answers_unmatched"] += 1
            self._answers.popleft()

    def _reachable_phones(self) -> list[str]:
        phones = set(self.gateway.online_phones()) if self.gateway is not None else set()
        if self.settings.downlink_mqtt and self.publish is not None:
            now, window = self._clock(), self.settings.mqtt_online_s
            phones.update(
                p for p, r in self.health.records.items()
                if r.transport == "mqtt" and r.last_frame is not None and now - r.last_frame <= window
            )  # fmt: skip
        return sorted(phones)

    async def _deliver(self, conn: psycopg.AsyncConnection[Any]) -> None:
        phones = self._reachable_phones()
        if not phones:
            return
        for row in await store.queued(conn, phones, limit=500):
            transport = self._reachable(row.phone)
            if transport is None:
                continue
            try:
                command = dl.command_from_json(row.msg_id, row.body)
            except dl.JsonError as exc:
                await store.release(conn, row.id, str(exc))
                continue
            if transport == "tcp":
                await self._send_tcp(conn, row, command)
            else:
                await self._send_mqtt(conn, row, command)

    def _reachable(self, phone: str) -> str | None:
        if self.gateway is not None and self.gateway.online(phone):
            return "tcp"
        if not self.settings.downlink_mqtt or self.publish is None:
            return None
        rec = self.health.records.get(phone)
        if rec is None or rec.transport != "mqtt" or rec.last_frame is None:
            return None
        return "mqtt" if self._clock() - rec.last_frame <= self.settings.mqtt_online_s else None

    async def _send_tcp(self, conn: psycopg.AsyncConnection[Any], row: store.CommandRow, command: dl.Command) -> None:
        assert self.gateway is not None
        if not await store.claim(conn, row.id, transport="tcp", connection=None, msg_sn=None, ack_observable=True):
            return
        try:
            sent = await self.gateway.send(row.phone, command)
        except (ConnectionError, TimeoutError) as exc:
            sent, error = None, repr(exc)
        else:
            error = "terminal went away"
        if sent is None:
            await store.release(conn, row.id, error)
            return
        sn, connection = sent
        await store.sent_on(conn, row.id, msg_sn=sn, connection=connection)

    async def _send_mqtt(self, conn: psycopg.AsyncConnection[Any], row: store.CommandRow, command: dl.Command) -> None:
        assert self.publish is not None
        rec = self.health.records[row.phone]
        sn = row.id & 0xFFFF
        observable = row.msg_id in _MQTT_OBSERVABLE
        if not await store.claim(conn, row.id, transport="mqtt", connection=None, msg_sn=sn, ack_observable=observable):
            return
        edition: Edition = 2019 if rec.edition == 2019 else 2013
        payload = msgspec.json.encode(dl.command_json(command, edition, msg_sn=sn))
        topic = f"{self.settings.topic_prefix}/{rec.mqtt_clientid or rec.header_phone}/{rec.header_phone}/dn"
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                await self.publish(topic, payload)
        except Exception as exc:  # noqa: BLE001 - any failure: it stays queued
            self.events.event("commands: downlink publish failed", row.phone, repr(exc)[:200])
            await store.release(conn, row.id, repr(exc))
            return
        self.counters["commands_sent_mqtt"] += 1
