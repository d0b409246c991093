"""Prototype ingest worker: owns partitions, writes fixes durably, acks after commit.

Ownership (see docs/scale-out-research.md, "Partition ownership"):

* membership: the worker holds pg_advisory_lock(MEMBER_NS, worker_id) for its
  whole life; the number of such locks in pg_locks is the number of live
  workers N;
* lease: the worker consumes partition queue p only while it holds
  pg_advisory_lock(LOCK_NS, p) on the *same* PostgreSQL session it writes the
  fixes with. If the process dies, the database ends the session and drops
  its locks; a write from a session that lost its lease is impossible, since
  the session is the lease;
* balance: every --rebalance seconds a worker aims at ceil(P / N) partitions:
  it takes free ones with pg_try_advisory_lock, or gives extra ones back
  (cancel the consumer, write and ack what was delivered, close the channel,
  then pg_advisory_unlock), so a joining worker finds partitions to take;
* fencing on the broker: each partition queue is a quorum queue with
  x-single-active-consumer, so even two workers that both believe they own p
  cannot both receive from it.

Processing: deliveries from all owned partitions go into one local queue;
batches of up to --batch fixes are written in one transaction (INSERT ... ON
CONFLICT (vid, seq) DO NOTHING, plus one processing-log row per fix for the
check), committed, and only then acked (basic.ack multiple per partition
channel). Optionally (--hub) the committed, "enriched" positions are
published to the gpsd.hub topic exchange for API nodes.

Bounded: exits after --max-seconds, or after --exit-idle seconds without a
delivery once it has processed something; SIGTERM releases everything and
exits cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time

import aio_pika
import psycopg
from proto_common import (
    AMQP_URL,
    HUB_EXCHANGE,
    LOCK_NS,
    MEMBER_NS,
    PARTITIONS,
    PG_DSN,
    PG_LEASE_OPTIONS,
    cpu_seconds,
    queue_name,
)

WRITE_SQL = """
WITH u AS (
    SELECT * FROM unnest(%(vid)s::text[], %(seq)s::int[], %(lat)s::float8[], %(lon)s::float8[],
                         %(ts)s::int8[], %(part)s::int[]) WITH ORDINALITY
        AS u(vid, seq, lat, lon, ts, part, pos)
), ins AS (
    INSERT INTO proto_fix (vid, seq, lat, lon, ts, worker, part)
    SELECT vid, seq, lat, lon, ts, %(worker)s, part FROM u ORDER BY pos
    ON CONFLICT (vid, seq) DO NOTHING
    RETURNING vid, seq
), proc AS (
    INSERT INTO proto_proc (worker, pid, vid, seq, part, inserted, batch, pos)
    SELECT %(worker)s, %(pid)s, u.vid, u.seq, u.part, ins.vid IS NOT NULL, %(batch)s, u.pos
    FROM u LEFT JOIN ins ON ins.vid = u.vid AND ins.seq = u.seq
    ORDER BY u.pos
    RETURNING inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FROM proc
"""

MEMBERS_SQL = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def emit(ev: str, **kw) -> None:
    kw.update(ev=ev, t=round(time.time(), 4))
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, args) -> None:
        self.args = args
        self.wid = args.worker_id
        self.q: asyncio.Queue = asyncio.Queue()
        self.owned: dict[int, tuple] = {}  # p -> (channel, queue, consumer_tag)
        self.batch_no = 0
        self.processed = 0
        self.inserted = 0
        self.duplicates = 0
        self.last_delivery = 0.0
        self.stop = asyncio.Event()
        self.amqp_lost = False
        self.t_start = time.monotonic()

    async def start(self) -> None:
        a = self.args
        self.pg = await psycopg.AsyncConnection.connect(
            a.pg_dsn, autocommit=True, options=PG_LEASE_OPTIONS, application_name=f"proto-worker-{self.wid}"
        )
        await self.pg.execute("SET synchronous_commit = on")
        # Membership: blocks while a previous incarnation's session is still alive.
        await self.pg.execute("SELECT pg_advisory_lock(%s, %s)", (MEMBER_NS, self.wid))
        # heartbeat=10: if the worker's host vanishes, the broker drops its
        # connection (and SAC hands the partition on) after ~2 missed beats,
        # not after the default 60 s ones.
        self.amqp = await aio_pika.connect(
            a.amqp_url, heartbeat=10, client_properties={"connection_name": f"worker-{self.wid}"}
        )
        self.amqp.close_callbacks.add(self._on_amqp_close)
        self.hub_ch = await self.amqp.channel(publisher_confirms=True) if a.hub else None
        self.hub_ex = await self.hub_ch.get_exchange(HUB_EXCHANGE) if a.hub else None
        emit("started", worker=self.wid, pid=os.getpid())

    def _on_amqp_close(self, *_args) -> None:
        self.amqp_lost = True
        self.stop.set()

    # --- ownership -----------------------------------------------------------

    async def members(self) -> int:
        cur = await self.pg.execute(MEMBERS_SQL, (MEMBER_NS,))
        return max(1, (await cur.fetchone())[0])

    async def acquire(self, p: int) -> bool:
        cur = await self.pg.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NS, p))
        if not (await cur.fetchone())[0]:
            return False
        ch = await self.amqp.channel(publisher_confirms=False)
        await ch.set_qos(prefetch_count=self.args.prefetch)
        queue = await ch.get_queue(queue_name(p), ensure=False)

        async def on_message(msg, p=p) -> None:
            self.last_delivery = time.monotonic()
            self.q.put_nowait((p, msg))

        tag = await queue.consume(on_message, no_ack=False)
        self.owned[p] = (ch, queue, tag)
        emit("acquire", worker=self.wid, p=p)
        return True

    async def release(self, p: int) -> None:
        ch, queue, tag = self.owned[p]
        t0 = time.monotonic()
        await queue.cancel(tag)  # no deliveries after CancelOk
        t1 = time.monotonic()
        await self.flush(p)  # write + ack what p already delivered
        t2 = time.monotonic()
        await ch.close()
        t3 = time.monotonic()
        if t3 - t0 > 0.5:
            emit(
                "slow_release",
                worker=self.wid,
                p=p,
                cancel_s=round(t1 - t0, 3),
                flush_s=round(t2 - t1, 3),
                close_s=round(t3 - t2, 3),
            )
        del self.owned[p]
        await self.pg.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NS, p))
        emit("release", worker=self.wid, p=p)

    async def rebalance(self) -> None:
        n = await self.members()
        target = math.ceil(self.args.partitions / n)
        while len(self.owned) > target:
            await self.release(max(self.owned))
        if len(self.owned) < target:
            # Start looking at a worker-specific offset so workers don't all
            # contend for partition 0 first.
            start = (self.wid * self.args.partitions) // max(n, 1)
            for i in range(self.args.partitions):
                p = (start + i) % self.args.partitions
                if p in self.owned:
                    continue
                if await self.acquire(p) and len(self.owned) >= target:
                    break

    # --- processing ------------------------------------------------------------

    def drain(self, limit: int) -> list:
        out = []
        while len(out) < limit:
            try:
                out.append(self.q.get_nowait())
            except asyncio.QueueEmpty:
                break
        return out

    async def flush(self, p: int) -> None:
        # After CancelOk every delivery of partition p is in the local queue.
        # Write (and ack) only those, now; other partitions' deliveries stay
        # queued in their order, so a backlogged worker releases p at once.
        # Order only matters within a partition, and p's order is kept.
        items = self.drain(self.q.qsize())
        mine = [it for it in items if it[0] == p]
        for it in items:
            if it[0] != p:
                self.q.put_nowait(it)
        for i in range(0, len(mine), self.args.batch):
            await self.write(mine[i : i + self.args.batch])

    async def write(self, batch: list) -> None:
        if not batch:
            return
        cols = {k: [] for k in ("vid", "seq", "lat", "lon", "ts", "part")}
        last_per_part: dict[int, object] = {}
        for p, msg in batch:
            fix = json.loads(msg.body)
            cols["vid"].append(fix["vid"])
            cols["seq"].append(fix["seq"])
            cols["lat"].append(fix["lat"])
            cols["lon"].append(fix["lon"])
            cols["ts"].append(fix["ts"])
            cols["part"].append(p)
            last_per_part[p] = msg
        self.batch_no += 1
        params = dict(cols, worker=self.wid, pid=os.getpid(), batch=self.batch_no)
        if self.args.no_write:  # trivial consumer for the engine's ceiling
            ins = total = len(batch)
        else:
            async with self.pg.transaction():
                cur = await self.pg.execute(WRITE_SQL, params)
                ins, total = await cur.fetchone()
        if self.args.crash_after_commit_at and time.monotonic() - self.t_start > self.args.crash_after_commit_at:
            # Test hook: die in the window between commit and ack, as a SIGKILL
            # there would. The engine redelivers these fixes to the next owner,
            # which must find them already stored (ON CONFLICT) and not reorder.
            emit("crash", worker=self.wid, pid=os.getpid(), unacked_committed=total)
            os.kill(os.getpid(), signal.SIGKILL)
        # Durable now (synchronous_commit = on). Feed the hub *before* the ack,
        # with publisher confirms: a crash between commit and ack then leads to
        # a redelivery, a duplicate the next owner detects, and a re-published
        # hub message (API nodes dedupe by (vehicle, seq)), never to a fix that
        # is stored but was never shown.
        if self.hub_ex is not None:
            await self.publish_hub(cols)
        for msg in last_per_part.values():
            await msg.ack(multiple=True)
        self.processed += total
        self.inserted += ins
        self.duplicates += total - ins

    async def publish_hub(self, cols: dict) -> None:
        # One message per partition per batch: enriched positions for API nodes.
        by_part: dict[int, list] = {}
        for vid, seq, lat, lon, ts, p in zip(
            cols["vid"], cols["seq"], cols["lat"], cols["lon"], cols["ts"], cols["part"]
        ):
            by_part.setdefault(p, []).append({"vid": vid, "seq": seq, "lat": lat, "lon": lon, "ts": ts})
        # Publish all, then wait for all confirms at once (one round trip per batch).
        await asyncio.gather(
            *(
                self.hub_ex.publish(
                    aio_pika.Message(
                        json.dumps(positions).encode(), delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT
                    ),
                    routing_key=f"pos.p{p:02d}",
                    mandatory=False,  # no API node bound yet is not an error
                )
                for p, positions in by_part.items()
            )
        )

    async def run(self) -> int:
        a = self.args
        await self.start()
        t_start = self.t_start = time.monotonic()
        next_rebalance = 0.0
        next_stats = 0.0
        cpu0 = cpu_seconds(os.getpid())
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_rebalance:
                await self.rebalance()
                next_rebalance = now + a.rebalance
            if now >= next_stats:
                emit(
                    "stats",
                    worker=self.wid,
                    owned=sorted(self.owned),
                    processed=self.processed,
                    inserted=self.inserted,
                    duplicates=self.duplicates,
                    cpu=round(cpu_seconds(os.getpid()) - cpu0, 3),
                )
                next_stats = now + 1.0
            if now - t_start > a.max_seconds:
                break
            if a.exit_idle and self.processed and self.q.empty() and now - self.last_delivery > a.exit_idle:
                break
            batch = self.drain(a.batch)
            if len(batch) < a.batch:
                # Linger briefly so batches fill up under load.
                try:
                    await asyncio.wait_for(self.stop.wait(), a.linger)
                except TimeoutError:
                    pass
                batch += self.drain(a.batch - len(batch))
            await self.write(batch)
        # Leave cleanly: give every partition back (its deliveries written and acked).
        if not self.amqp_lost:
            for p in sorted(self.owned):
                await self.release(p)
        emit(
            "stopped",
            worker=self.wid,
            processed=self.processed,
            inserted=self.inserted,
            duplicates=self.duplicates,
            cpu=round(cpu_seconds(os.getpid()) - cpu0, 3),
            amqp_lost=self.amqp_lost,
        )
        await self.amqp.close()
        await self.pg.close()
        return 1 if self.amqp_lost else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker-id", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=PARTITIONS)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--prefetch", type=int, default=500, help="unacked deliveries per partition channel")
    ap.add_argument("--linger", type=float, default=0.01, help="seconds a short batch waits to fill")
    ap.add_argument("--rebalance", type=float, default=0.25, help="seconds between ownership checks")
    ap.add_argument("--hub", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--crash-after-commit-at",
        type=float,
        default=0.0,
        help="test hook: SIGKILL itself after the first commit past this many seconds, before acking",
    )
    ap.add_argument("--no-write", action="store_true", help="ack without writing (engine ceiling)")
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--exit-idle", type=float, default=0.0)
    ap.add_argument("--amqp-url", default=AMQP_URL)
    ap.add_argument("--pg-dsn", default=PG_DSN)
    args = ap.parse_args()

    async def amain() -> int:
        w = Worker(args)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, w.stop.set)
        loop.add_signal_handler(signal.SIGINT, w.stop.set)
        return await w.run()

    sys.exit(asyncio.run(amain()))


if __name__ == "__main__":
    main()
