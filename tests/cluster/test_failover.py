"""Issue 18's "done when": three ingest workers and two API nodes on one
machine around a real RabbitMQ node. A seeded fleet with known violations
(JT/T 808 SOS alarm bits set and cleared at known times) publishes MQTT 3.1.1
QoS 1 to RabbitMQ's MQTT plugin; one worker is SIGKILLed mid-run and started
again later. Then:

* every fix the broker acknowledged is stored exactly once;
* every expected alert is stored exactly once, with its end where the alarm
  was cleared -- also the alerts open on the killed worker, ended by the new
  owner under the same id -- and no alert is raised for the other vehicles;
* the partition leases are held on the sessions the track writers write with;
* per-vehicle order held: no fix was processed after a newer one of its
  vehicle (none flagged late; receipt times rise with fix times);
* the websocket on an API node saw each alert's start and end exactly once,
  and an acknowledgement on one API node reached the other node's desk.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
import pytest

from tests.cluster.nodes import Desk, Node, cluster_env, lease_holders, leases, post, wait_for
from tests.faults.load import Publisher, cancel, stored
from tests.fixtures.server import make_tokens

pytestmark = pytest.mark.timeout(300)

PARTITIONS = 12
VEHICLES = 60
RATE = 300.0  # fixes/s: 5 per vehicle per wall second, one second of fix time apart
SOS = 1  # JT/T 808 alarm bit 0: kind "sos", key "alarm:sos"


@pytest.fixture
def cluster_names(rabbitmq: tuple[int, int]) -> Iterator[str]:
    """A tag for this test's names on the broker; its queues and exchanges are deleted after."""
    tag = uuid.uuid4().hex[:8]
    yield tag

    async def clean() -> None:
        conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbitmq[0]}/")
        async with conn:
            for p in range(PARTITIONS):
                ch = await conn.channel()
                await ch.queue_delete(f"gpsd.ingest.{tag}.p{p:02d}")
            ch = await conn.channel()
            await ch.exchange_delete(f"gpsd.ingest.{tag}")
            await ch.exchange_delete(f"gpsd.hub.{tag}")

    asyncio.run(clean())


async def at(t0: float, s: float) -> None:
    await asyncio.sleep(max(0.0, t0 + s - time.monotonic()))


def sos_alerts(dsn: str, prefix: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id::text, vehicle_id, kind, ts, ended_ts, key, details FROM alerts WHERE vehicle_id LIKE %s"
            " ORDER BY vehicle_id, ts",
            (prefix + "-%",),
        ).fetchall()


def order_violations(dsn: str, prefix: str) -> list[str]:
    """Vehicles with a fix flagged late, or received before an older fix of theirs."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT vehicle_id, flags, received_at < lag(received_at) OVER w FROM fixes WHERE vehicle_id LIKE %s"
            " WINDOW w AS (PARTITION BY vehicle_id ORDER BY ts)",
            (prefix + "-%",),
        ).fetchall()
    return sorted({f"{v} (flags {flags})" if flags & 1 else f"{v} (received out of order)"
                   for v, flags, earlier in rows if flags & 1 or earlier})  # fmt: skip


async def test_three_workers_one_killed_and_restarted(
    rabbitmq: tuple[int, int], cluster_names: str, own_database: str, tmp_path: Path
) -> None:
    tag, dsn = cluster_names, own_database
    amqp_port, mqtt_port = rabbitmq
    env = cluster_env(tag=tag, dsn=dsn, amqp_port=amqp_port, partitions=PARTITIONS, workdir=tmp_path)
    apis = [Node("api", f"api{i}-{tag}", env, tmp_path) for i in (1, 2)]
    workers = [Node("ingest", f"w{i}-{tag}", env, tmp_path) for i in (1, 2, 3)]
    nodes = [*apis, *workers]
    desks: list[Desk] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        for node in nodes:
            node.start()
        healthy = lambda: all((n.health() or {}).get("status") == "ok" for n in apis)  # noqa: E731
        await wait_for(healthy, 60, "API nodes", nodes=nodes)
        await wait_for(lambda: leases(dsn) == (PARTITIONS, 3), 60, "3 workers holding every partition", nodes=nodes)
        assert lease_holders(dsn) == {"gpsd-writer"}  # the leases live on the sessions that write the fixes
        tokens = make_tokens(dsn, tag)
        desks = [Desk(f"ws://127.0.0.1:{n.http_port}/ws/live?token={tokens['viewer']}") for n in apis]
        tasks = [asyncio.create_task(d.run()) for d in desks]
        await asyncio.wait_for(asyncio.gather(*(d.ready.wait() for d in desks)), 10)

        pub = Publisher(mqtt_port, f"f{tag}", vehicles=VEHICLES, rate=RATE)
        v = [pub.vehicle(i) for i in range(VEHICLES)]
        ends_before_kill, ends_before_restart, ends_after_restart = v[0:10], v[10:20], v[20:30]
        stays_open, raised_after_kill = v[30:35], v[35:40]
        stop = asyncio.Event()
        tasks.append(asyncio.create_task(pub.run(120, stop=stop)))
        t0 = time.monotonic()
        await at(t0, 2)
        for vid in [*ends_before_kill, *ends_before_restart, *ends_after_restart, *stays_open]:
            pub.alarm[vid] = SOS
        await at(t0, 4)
        for vid in ends_before_kill:
            pub.alarm[vid] = 0
        await at(t0, 6)
        assert all(w.alive() for w in workers), "a worker died before the kill"
        workers[0].kill()
        await at(t0, 8)
        for vid in ends_before_restart:
            pub.alarm[vid] = 0
        for vid in raised_after_kill:
            pub.alarm[vid] = SOS
        await at(t0, 11)
        workers[0].start()  # fixes keep coming until it has rejoined and taken its share
        await wait_for(lambda: leases(dsn) == (PARTITIONS, 3), 60, "the restarted worker to rejoin", nodes=nodes)
        t1 = time.monotonic()
        await at(t1, 1)
        for vid in [*ends_after_restart, *raised_after_kill]:
            pub.alarm[vid] = 0
        await at(t1, 4)
        stop.set()
        await asyncio.wait_for(tasks[-1], 30)
        assert pub.confirmed and pub.failures == 0

        # Every acknowledged fix stored, exactly once (a row per fix, and the very set).
        await wait_for(lambda: stored(dsn, f"f{tag}")[1] == pub.confirmed, 60, "every fix stored", nodes=nodes)
        rows, distinct = stored(dsn, f"f{tag}")
        assert rows == len(distinct) == len(pub.confirmed)
        assert all(w.alive() for w in workers), [w.log_tail() for w in workers if not w.alive()]
        assert leases(dsn) == (PARTITIONS, 3)

        # Every expected alert exactly once, ended where its alarm was cleared.
        expected = {*ends_before_kill, *ends_before_restart, *ends_after_restart, *stays_open, *raised_after_kill}
        ended = expected - set(stays_open)
        alerts = sos_alerts(dsn, f"f{tag}")
        summary = [(a[1][-4:], a[2], a[5], a[3].time().isoformat(), a[4] and a[4].time().isoformat(), a[6])
                   for a in alerts]  # fmt: skip
        assert Counter(a[1] for a in alerts) == Counter(expected), summary
        assert {a[2] for a in alerts} == {"sos"}
        assert {a[1] for a in alerts if a[4] is not None} == ended
        assert order_violations(dsn, f"f{tag}") == []

        # Both desks saw each start and each end exactly once.
        ids = {a[0]: a[1] for a in alerts}

        def seen(desk: Desk, phase: str) -> Counter[str]:
            return Counter(m["id"] for m in desk.alerts if m.get("phase") == phase)

        def complete() -> bool:
            return all(set(seen(d, "start")) == set(ids) and len(seen(d, "end")) == len(ended) for d in desks)

        await wait_for(complete, 20, "both desks to see every alert", nodes=nodes)
        for desk in desks:
            assert seen(desk, "start") == Counter(ids.keys())
            assert {ids[i] for i in seen(desk, "end")} == ended and max(seen(desk, "end").values()) == 1

        # An acknowledgement on one API node reaches the other node's desk.
        open_id = next(i for i, vid in ids.items() if vid == stays_open[0])
        acked = post(f"{apis[0].http}/api/alerts/{open_id}/ack", tokens["operator"])
        assert acked["state"] == "acked"

        def acked_on_other_desk() -> bool:
            return any(m["id"] == open_id and m.get("state") == "acked" for m in desks[1].alerts)

        await wait_for(acked_on_other_desk, 10, "the acknowledgement on the other API node's desk", nodes=nodes)

        # SIGTERM: each worker gives its partitions back and exits cleanly, the last one too.
        assert [w.stop() for w in workers] == [0, 0, 0], [w.log_tail() for w in workers]
        assert leases(dsn) == (0, 0)
    finally:
        for task in tasks:
            await cancel(task)
        for node in nodes:
            node.stop()
