"""The partitioned ingest source on RabbitMQ: a worker consumes the partition
queues it holds a lease for, hands batches to the pipeline and acknowledges
each one only after the pipeline says it is durable.

Ownership (docs/scale-out-research.md §4):

* membership: the worker holds an advisory lock ``(MEMBER_NS, n)`` on its
  lease session for its life; the live workers are counted in ``pg_locks``;
* lease: it consumes partition p only while holding ``(LEASE_NS, p)`` on that
  session; every ``rebalance_s`` it aims at ``ceil(P / N)`` partitions,
  taking free ones or giving extra ones back (cancel the consumer, process and
  acknowledge what p already delivered, close the channel, unlock, then
  ``on_revoke`` so the pipeline forgets p's vehicles);
* fence: every partition queue has a single active consumer, so two workers
  that both believe they own p cannot both receive from it;
* failure: a lost lease session or AMQP connection ends :meth:`run` with
  :class:`~gpsd_server.errors.ClusterError` (the worker exits; whatever it did
  not acknowledge is delivered again, in order, to the next owner).

The lease session is the track writer's own (``session``: the writer's
``on_session``), so a session that lost its leases cannot write either: the
writer never reconnects once it holds them, and ends the worker instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aio_pika
import psycopg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from gpsd_server.cluster import topology
from gpsd_server.errors import ClusterError
from gpsd_server.settings import ClusterSettings, IngestSettings
from gpsd_server.store import leases

log = logging.getLogger(__name__)

MAX_WORKERS = 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """A fix's message as the pipeline reads it, with the partition it came from."""

    topic: str  # as the terminal published it ("fleet/V1/fix")
    payload: bytes
    partition: int


# The pipeline: a batch in, an awaitable out that completes once it is durable.
Handler = Callable[[Sequence[Delivery]], Awaitable[Awaitable[None]]]
T = TypeVar("T")


class Session(Protocol):
    """Runs a statement function on the writer's session (``TrackWriter.on_session``)."""

    async def __call__(self, op: Callable[[psycopg.Connection[Any]], T]) -> T: ...


Revoke = Callable[[set[int]], Awaitable[None]]


@dataclass(slots=True)
class _Owned:
    channel: AbstractChannel
    queue: AbstractQueue
    tag: str


class RabbitPartitionSource:
    def __init__(
        self,
        settings: ClusterSettings,
        cycle: IngestSettings,
        *,
        session: Session,
        subscriptions: Sequence[str],
        handler: Handler,
        on_revoke: Revoke,
        name: str = "gpsd-ingest",
    ) -> None:
        self._s = settings
        self._max_batch = cycle.cycle_max_messages
        self._session = session
        self._subscriptions = list(subscriptions)
        self._handler = handler
        self._on_revoke = on_revoke
        self._name = name
        self._local: asyncio.Queue[tuple[int, AbstractIncomingMessage]] = asyncio.Queue()
        self._pending: asyncio.Queue[tuple[Awaitable[None], list[AbstractIncomingMessage]]] = asyncio.Queue()
        self._owned: dict[int, _Owned] = {}
        self._arrived = asyncio.Event()
        self._processing = asyncio.Lock()  # a batch, or a partition given back, at a time
        self._lost: asyncio.Future[str] | None = None
        self._acking: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.worker: int | None = None
        self.messages_in = 0
        self.duplicates_seen = 0

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    async def run(self) -> None:
        self._lost = asyncio.get_running_loop().create_future()
        amqp: AbstractConnection | None = None
        try:
            keepalive = self._s.lease_keepalive
            self.worker = await self._session(lambda c: leases.join(c, MAX_WORKERS, keepalive))
            if self.worker is None:
                raise ClusterError(f"more than {MAX_WORKERS} ingest workers on one database")
            amqp = connection = await aio_pika.connect(
                self._s.amqp_url, heartbeat=self._s.heartbeat_s,
                client_properties={"connection_name": f"{self._name}-{self.worker}"},
            )  # fmt: skip
            connection.close_callbacks.add(lambda *_: self._lose("AMQP connection closed"))
            async with connection.channel() as ch:
                await topology.declare(ch, self._s, self._subscriptions)
            self.connected.set()
            log.info("ingest worker %d on %s, %d partitions", self.worker, self._s.amqp_url, self._s.partitions)
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._rebalance_forever(connection), name="cluster-rebalance"),
                    tg.create_task(self._batches(), name="cluster-batches"),
                ]
                self._acking = tg.create_task(self._acker(), name="cluster-acker")
                tasks.append(self._acking)
                why = await self._lost
                for t in tasks:
                    t.cancel()
                raise ClusterError(why)
        finally:
            self.connected.clear()
            if amqp is not None and not amqp.is_closed and not (self._lost and self._lost.done()):
                # Shutdown: give every partition back, its deliveries processed and acknowledged.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(30):
                        await self.release_all()
            if amqp is not None:
                with contextlib.suppress(Exception):
                    await amqp.close()

    def _lose(self, why: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)

    # -- ownership -------------------------------------------------------------

    async def _rebalance_forever(self, amqp: AbstractConnection) -> None:
        try:
            while True:
                await self._rebalance(amqp)
                await asyncio.sleep(self._s.rebalance_s)
        except (ClusterError, psycopg.Error, OSError) as exc:
            self._lose(f"lease session lost: {exc}")

    async def _rebalance(self, amqp: AbstractConnection) -> None:
        p_total = self._s.partitions
        n = await self._session(leases.members)
        target = math.ceil(p_total / n)
        while len(self._owned) > target:
            await self._release(max(self._owned))
        if len(self._owned) >= target:
            return
        start = ((self.worker or 0) * p_total) // n  # workers start looking at different partitions
        for i in range(p_total):
            p = (start + i) % p_total
            if p in self._owned or not await self._session(lambda c, p=p: leases.try_take(c, p)):  # type: ignore[misc]
                continue
            await self._consume(amqp, p)
            if len(self._owned) >= target:
                break

    async def _consume(self, amqp: AbstractConnection, p: int) -> None:
        channel = await amqp.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._s.prefetch)
        queue = await channel.get_queue(topology.queue_name(self._s, p), ensure=False)

        async def on_message(msg: AbstractIncomingMessage) -> None:
            self._local.put_nowait((p, msg))
            self._arrived.set()

        tag = await queue.consume(on_message, no_ack=False)
        self._owned[p] = _Owned(channel, queue, tag)
        log.info("worker %s took partition %d", self.worker, p)

    async def _release(self, p: int) -> None:
        """Give p back: nothing of it is delivered after the cancel, what it
        delivered before is processed and acknowledged, then the lease goes."""
        owned = self._owned.pop(p)
        await owned.queue.cancel(owned.tag)
        async with self._processing:
            items = [self._local.get_nowait() for _ in range(self._local.qsize())]
            for item in items:
                if item[0] != p:
                    self._local.put_nowait(item)  # other partitions keep their order
            mine = [item for item in items if item[0] == p]
            for i in range(0, len(mine), self._max_batch):
                await self._process(mine[i : i + self._max_batch])
        if self._acking is not None and not self._acking.done():
            await self._pending.join()  # acknowledged, all of it
        else:  # leaving: the acker is gone, acknowledge here
            while not self._pending.empty():
                await self._ack(*self._pending.get_nowait())
                self._pending.task_done()
        await owned.channel.close()
        await self._session(lambda c: leases.give_back(c, p))
        await self._on_revoke({p})
        log.info("worker %s gave partition %d back", self.worker, p)

    async def release_all(self) -> None:
        """Leaving cleanly (shutdown): every partition given back."""
        for p in sorted(self._owned):
            await self._release(p)

    # -- processing --------------------------------------------------------------

    async def _batches(self) -> None:
        # Deliveries leave the local queue only under the lock, so a partition
        # given back finds every one of its deliveries there or processed.
        while True:
            await self._arrived.wait()
            if self._s.linger_s and self._local.qsize() < self._max_batch:
                await asyncio.sleep(self._s.linger_s)  # let a short batch fill
            async with self._processing:
                batch: list[tuple[int, AbstractIncomingMessage]] = []
                while len(batch) < self._max_batch and not self._local.empty():
                    batch.append(self._local.get_nowait())
                if self._local.empty():
                    self._arrived.clear()
                await self._process(batch)

    async def _process(self, batch: list[tuple[int, AbstractIncomingMessage]]) -> None:
        if not batch:
            return
        deliveries = []
        last: dict[int, AbstractIncomingMessage] = {}
        for p, msg in batch:
            deliveries.append(Delivery(topology.topic_of(msg.routing_key or ""), msg.body, p))
            last[p] = msg
            if msg.redelivered:
                self.duplicates_seen += 1
        self.messages_in += len(batch)
        durable = await self._handler(deliveries)
        self._pending.put_nowait((durable, list(last.values())))

    async def _acker(self) -> None:
        """Acknowledge each batch once durable, in order: one ack (multiple) per partition channel."""
        while True:
            durable, lasts = await self._pending.get()
            try:
                await self._ack(durable, lasts)
            except Exception as exc:  # not durable, or the channel went: the next owner gets it again
                self._lose(f"batch not acknowledged: {exc!r}")
                raise
            finally:
                self._pending.task_done()

    async def _ack(self, durable: Awaitable[None], lasts: list[AbstractIncomingMessage]) -> None:
        await durable
        for msg in lasts:
            await msg.ack(multiple=True)
