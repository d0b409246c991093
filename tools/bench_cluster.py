"""Scale-out benchmark: 1, 2 and 3 ``gpsd-server ingest`` workers on RabbitMQ.

    .venv/bin/python tools/bench_cluster.py [--fixes 60000] [--vehicles 1000] [--workers 1,2,3]

Runs on the project's services (``tools/services.sh``: PostgreSQL with
TimescaleDB; ``tools/cluster/services.sh``: RabbitMQ 3.10 with its MQTT
plugin), started if they are not running, on the ports of ``GPSD_PG_PORT``,
``GPSD_AMQP_PORT`` and ``GPSD_AMQP_MQTT_PORT``. Every case has its own
database and its own names on the broker.

For each worker count, in the same run:

* the workers start (the demo city's zones, routes and registry loaded, so
  the rules run), take every partition, and are stopped (SIGSTOP);
* **broker ceiling**: ``--fixes`` native fixes are published over MQTT 3.1.1
  QoS 1 by ``--connections`` raw publishers into the partition queues while
  no worker consumes; PUBACKed/s is what RabbitMQ takes in (MQTT ->
  consistent-hash exchange -> quorum queues, publisher confirms), with its
  CPU per message;
* **workers**: SIGCONT, and the drain of that backlog is timed from the
  first stored fix's receipt to the last (the server's clock, the
  ``received_at`` column), so neither start-up nor the publisher counts.
  Printed: fixes/s in total and per worker (each worker's own count of
  stored fixes), and CPU per fix of the workers, RabbitMQ (delivery, acks,
  the hub feed) and PostgreSQL over the drain, and the bytes on disk per
  stored fix (the ``fixes`` hypertable with its indexes, uncompressed).

Machine-bound: every rate depends on this machine and on what else runs on
it; the CPU per fix travels better. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tools" / "cluster")]

from proto_common import RawMqttPublisher  # noqa: E402

from gpsd_server.cluster import topology  # noqa: E402
from gpsd_server.settings import ClusterSettings  # noqa: E402

STATE = Path(os.environ.get("GPSD_STATE", REPO / ".state")).resolve()
PG_PORT = int(os.environ.get("GPSD_PG_PORT", "55432"))
AMQP_PORT = int(os.environ.get("GPSD_AMQP_PORT", "15610"))
MQTT_PORT = int(os.environ.get("GPSD_AMQP_MQTT_PORT", "18942"))
ADMIN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int, *, reaped: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    n = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return n / TICK


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError):
                pass
    return out


def postmaster() -> int:
    """The PostgreSQL postmaster listening on PG_PORT."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/postgres") and b"-D" in args:
            data = Path(args[args.index(b"-D") + 1].decode())
            try:
                lines = (data / "postmaster.pid").read_text().splitlines()
            except OSError:
                continue
            if len(lines) > 3 and lines[3].strip() == str(PG_PORT):
                return int(d.name)
    raise SystemExit(f"no PostgreSQL on port {PG_PORT}")


def pg_cpu(pm: int) -> float:
    """The cluster's CPU: the postmaster with its reaped children, and every live backend."""
    return cpu(pm, reaped=True) + sum(cpu(c) for c in children(pm))


def rabbit_pid() -> int:
    return int((STATE / "cluster" / "rabbitmq" / "rabbitmq.pid").read_text().strip())


def ensure_services() -> None:
    env = {**os.environ, "GPSD_STATE": str(STATE)}
    subprocess.run(["bash", str(REPO / "tools" / "services.sh"), "start"], check=True, env=env)
    subprocess.run(["bash", str(REPO / "tools" / "cluster" / "services.sh"), "start"], check=True, env=env)


def settings(tag: str, partitions: int) -> ClusterSettings:
    return ClusterSettings(
        engine="rabbitmq", amqp_url=f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/", partitions=partitions,
        exchange=f"bench.ingest.{tag}", queue_prefix=f"bench.ingest.{tag}.p", hub_exchange=f"bench.hub.{tag}",
    )  # fmt: skip


async def declare(s: ClusterSettings, prefix: str) -> None:
    conn = await aio_pika.connect(s.amqp_url)
    async with conn:
        await topology.declare(await conn.channel(), s, [f"{prefix}/+/fix"])


async def drop(s: ClusterSettings) -> None:
    conn = await aio_pika.connect(s.amqp_url)
    async with conn:
        ch = await conn.channel()
        for p in range(s.partitions):
            await ch.queue_delete(topology.queue_name(s, p))
        await ch.exchange_delete(s.exchange)
        await ch.exchange_delete(s.hub_exchange)


def fixes(prefix: str, vehicles: int, total: int) -> list[tuple[str, bytes]]:
    """Native fixes, one second apart per vehicle, ending just before now, inside the demo city."""
    per = total // vehicles
    t0 = time.time() - per - 30
    rng = random.Random(808)
    start = {v: (112.30 + rng.random() * 0.1, 28.55 + rng.random() * 0.1) for v in range(vehicles)}
    out = []
    for n in range(per):
        for v in range(vehicles):
            lon, lat = start[v]
            body = {"ts": t0 + n, "lon": lon + n * 2e-5, "lat": lat, "speed_kmh": 36.0, "heading": 90}
            out.append((f"{prefix}/{prefix}-{v:05d}/fix", json.dumps(body).encode()))
    return out


async def publish(messages: list[tuple[str, bytes]], connections: int) -> float:
    """Publish all, QoS 1; returns PUBACKed messages per second."""
    pubs = [RawMqttPublisher(MQTT_PORT, f"bench-{uuid.uuid4().hex[:6]}-{i}", window=500) for i in range(connections)]
    for p in pubs:
        await p.connect()
    t0 = time.monotonic()

    async def one(p: RawMqttPublisher, part: list[tuple[str, bytes]]) -> None:
        for topic, payload in part:
            await p.publish(topic, payload)
        assert await p.wait_all_acked(120)

    # A vehicle's fixes all on one connection, in order (as a terminal sends them).
    by_conn: list[list[tuple[str, bytes]]] = [[] for _ in pubs]
    for topic, payload in messages:
        by_conn[hash(topic) % connections].append((topic, payload))
    await asyncio.gather(*(one(p, part) for p, part in zip(pubs, by_conn, strict=True)))
    elapsed = time.monotonic() - t0
    for p in pubs:
        await p.close()
    return len(messages) / elapsed


def leases(dsn: str) -> tuple[int, int]:
    """(partitions leased, workers joined) in this database."""
    from gpsd_server.store.leases import held

    with psycopg.connect(dsn) as conn:
        return held(conn)


def stored(dsn: str) -> tuple[int, float, float]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM min(received_at)), extract(epoch FROM max(received_at)) FROM fixes"
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0), float(row[2] or 0)


def case(n: int, args: argparse.Namespace, pm: int, rmq: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix = f"b{tag}"
    db = f"bench_cluster_{tag}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = f"postgresql://postgres@127.0.0.1:{PG_PORT}/{db}"
    s = settings(tag, args.partitions)
    asyncio.run(declare(s, prefix))
    messages = fixes(prefix, args.vehicles, args.fixes)
    workdir = STATE / "bench-cluster" / tag
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPSD_")}
        env.update({
            "PYTHONPATH": str(REPO), "GPSD_DATABASE__DSN": dsn, "GPSD_CLUSTER__ENGINE": "rabbitmq",
            "GPSD_CLUSTER__AMQP_URL": s.amqp_url, "GPSD_CLUSTER__PARTITIONS": str(s.partitions),
            "GPSD_CLUSTER__EXCHANGE": s.exchange, "GPSD_CLUSTER__QUEUE_PREFIX": s.queue_prefix,
            "GPSD_CLUSTER__HUB_EXCHANGE": s.hub_exchange, "GPSD_MQTT__TOPIC_PREFIX": prefix,
            "GPSD_OWNTRACKS__ENABLED": "false", "GPSD_JT808__TOPIC_PREFIX": f"j{tag}",
            "GPSD_GEOFENCES__DIR": str(REPO / "geofences"),
            "GPSD_CLUSTER__HEARTBEAT_S": "120",  # stopped while the backlog is published
        })  # fmt: skip
        for i in range(n):
            d = workdir / f"w{i}"
            d.mkdir(parents=True)
            wenv = {**env, "GPSD_STATE": str(d), "GPSD_MQTT__CLIENT_ID": f"bench-{tag}-w{i}"}
            with (d / "node.log").open("wb") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "gpsd_server", "ingest"], cwd=d, env=wenv,
                                              stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        deadline = time.monotonic() + 120
        while leases(dsn) != (s.partitions, n):  # started, city loaded, every partition held
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"workers did not start; logs in {workdir}")
            time.sleep(0.2)
        time.sleep(1.0)
        for p in procs:
            p.send_signal(signal.SIGSTOP)  # the backlog queues up at the broker, as after an outage
        r0 = cpu(rmq)
        ceiling = asyncio.run(publish(messages, args.connections))
        rabbit_publish_us = (cpu(rmq) - r0) / len(messages) * 1e6
        w0, r1, p1 = sum(cpu(p.pid) for p in procs), cpu(rmq), pg_cpu(pm)
        for p in procs:
            p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 600
        while stored(dsn)[0] < len(messages):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"workers did not store the backlog; logs in {workdir}")
            time.sleep(0.25)
        worker_cpu = sum(cpu(p.pid) for p in procs) - w0
        rabbit_drain = cpu(rmq) - r1
        pg_drain = pg_cpu(pm) - p1
        count, first, last = stored(dsn)
        with psycopg.connect(dsn) as conn:
            size = conn.execute(
                "SELECT sum(total_bytes) FROM hypertable_detailed_size('fixes')"
                " UNION ALL SELECT pg_total_relation_size('fixes')"
            ).fetchall()
        disk = max(int(r[0] or 0) for r in size)  # a hypertable keeps its rows in chunks
        per_worker = []
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for i, p in enumerate(procs):
            p.wait(60)
            m = re.search(r"stopped; (\d+) fixes stored", (workdir / f"w{i}" / "node.log").read_text())
            per_worker.append(int(m.group(1)) if m else 0)
        span = max(last - first, 1e-3)
        return {
            "workers": n,
            "fixes": count,
            "broker_ceiling_per_s": ceiling,
            "rabbit_publish_us_per_fix": rabbit_publish_us,
            "total_per_s": count / span,
            "per_worker_per_s": [w / span for w in per_worker],
            "worker_cpu_us_per_fix": worker_cpu / count * 1e6,
            "rabbit_drain_us_per_fix": rabbit_drain / count * 1e6,
            "pg_us_per_fix": pg_drain / count * 1e6,
            "drain_s": span,
            "disk_bytes_per_fix": disk / count,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        asyncio.run(drop(s))
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixes", type=int, default=60_000)
    ap.add_argument("--vehicles", type=int, default=1_000)
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--connections", type=int, default=20, help="MQTT publisher connections")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    ensure_services()
    pm, rmq = postmaster(), rabbit_pid()
    print(f"{os.cpu_count()} CPUs; {args.fixes} fixes of {args.vehicles} vehicles, {args.partitions} partitions")
    print(f"{'workers':>7} {'broker ceiling':>15} {'total fixes/s':>14} {'per worker fixes/s':>22} "
          f"{'worker µs/fix':>14} {'RabbitMQ µs/fix':>16} {'PostgreSQL µs/fix':>18} {'disk B/fix':>10}")  # fmt: skip
    results = []
    for n in (int(x) for x in args.workers.split(",")):
        r = case(n, args, pm, rmq)
        results.append(r)
        per = ", ".join(f"{x:,.0f}" for x in r["per_worker_per_s"])
        rabbit = f"{r['rabbit_publish_us_per_fix']:.0f} in + {r['rabbit_drain_us_per_fix']:.0f} out"
        print(
            f"{n:>7} {r['broker_ceiling_per_s']:>13,.0f}/s {r['total_per_s']:>14,.0f} {per:>22} "
            f"{r['worker_cpu_us_per_fix']:>14.0f} {rabbit:>16} {r['pg_us_per_fix']:>18.0f}"
            f" {r['disk_bytes_per_fix']:>10.0f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
