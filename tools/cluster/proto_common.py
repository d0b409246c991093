"""Shared pieces of the scale-out prototype (tools/cluster/proto_*.py).

The partitioning topology on RabbitMQ 3.10 (Debian 12):

    terminals --MQTT 3.1.1 QoS 1--> amq.topic          (MQTT plugin; "/" -> ".")
    amq.topic --e2e binding "fleet.*.fix", "jt808.*.*.up", "owntracks.*.*"--> gpsd.ingest
    gpsd.ingest (x-consistent-hash on the routing key = the terminal's topic)
        --weight "1"--> gpsd.ingest.p00 .. gpsd.ingest.p{P-1}
                        (quorum queues, x-single-active-consumer = true)

One topic is one vehicle (terminal), so all of a vehicle's fixes land in one
partition queue, in the order its MQTT connection published them. A worker
consumes a partition only while it holds the PostgreSQL session-level
advisory lock (LOCK_NS, partition) on the very connection it writes with.
"""

from __future__ import annotations

import os
import time

EXCHANGE = "gpsd.ingest"
QUEUE_PREFIX = "gpsd.ingest.p"
HUB_EXCHANGE = "gpsd.hub"  # enriched positions / alerts for API nodes (topic exchange)
PARTITIONS = int(os.environ.get("GPSD_CLUSTER_PARTITIONS", "12"))
# Routing keys as the MQTT plugin writes them (MQTT "/" becomes AMQP ".").
TOPIC_BINDINGS = ("fleet.*.fix", "jt808.*.*.up", "owntracks.*.*")
RING_WEIGHT = os.environ.get("GPSD_CLUSTER_RING_WEIGHT", "20")
LOCK_NS = 808_001  # advisory lock class id for partition leases
MEMBER_NS = 808_002  # advisory lock class id for worker membership

AMQP_URL = os.environ.get("GPSD_CLUSTER_AMQP_URL", "amqp://guest:guest@127.0.0.1:15610/")
MQTT_PORT = int(os.environ.get("GPSD_CLUSTER_MQTT_PORT", "18942"))
PG_DSN = os.environ.get("GPSD_CLUSTER_PG_DSN", "postgresql://postgres@127.0.0.1:55541/gpsd_test")
# Server-side keepalives: a worker whose host vanishes (no FIN/RST) loses its
# leases after ~idle + interval*count seconds instead of the OS default 2 h.
PG_LEASE_OPTIONS = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"


def queue_name(p: int) -> str:
    return f"{QUEUE_PREFIX}{p:02d}"


async def declare_topology(channel) -> None:
    """Idempotently declare the exchanges, partition queues and bindings (aio-pika channel)."""
    import aio_pika

    ingest = await channel.declare_exchange(EXCHANGE, "x-consistent-hash", durable=True)
    topic = await channel.get_exchange("amq.topic")
    for key in TOPIC_BINDINGS:
        await ingest.bind(topic, routing_key=key)
    for p in range(PARTITIONS):
        q = await channel.declare_queue(
            queue_name(p),
            durable=True,
            arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
        )
        # Consistent-hash weight = points on the hash ring for this queue; one
        # point per queue leaves partitions 2x apart in size, 20 evens them out.
        await q.bind(ingest, routing_key=RING_WEIGHT)
    await channel.declare_exchange(HUB_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime+stime of a process from /proc (and, with children, of its direct children)."""
    tick = os.sysconf("SC_CLK_TCK")

    def one(p: int) -> float:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return 0.0

    total = one(pid)
    if children:
        for kid in child_pids(pid):
            total += one(kid)
    return total


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def now() -> float:
    return time.time()


# --- a minimal MQTT 3.1.1 QoS 1 publisher ----------------------------------
# paho-mqtt tops out near 4-5k msg/s per process here, below either engine;
# this writes PUBLISH packets directly and counts PUBACKs, so the publisher is
# not what the engine figures measure.


def _remlen(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def mqtt_connect_packet(client_id: str, clean: bool = True, keepalive: int = 60) -> bytes:
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04" + bytes([0x02 if clean else 0x00]) + keepalive.to_bytes(2, "big")
    payload = len(cid).to_bytes(2, "big") + cid
    body = var + payload
    return b"\x10" + _remlen(len(body)) + body


def mqtt_publish_packet(topic: str, payload: bytes, pid: int) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + pid.to_bytes(2, "big") + payload
    return b"\x32" + _remlen(len(body)) + body


class RawMqttPublisher:
    """One MQTT connection publishing QoS 1 with a bounded in-flight window."""

    def __init__(self, port: int, client_id: str, window: int = 500) -> None:
        self.port = port
        self.client_id = client_id
        self.window = window
        self.acked = 0
        self.sent = 0
        self._pid = 0
        self._free = None
        self._reader = None
        self._writer = None
        self._rtask = None

    async def connect(self) -> None:
        import asyncio

        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(mqtt_connect_packet(self.client_id))
        await self._writer.drain()
        ack = await self._reader.readexactly(4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise RuntimeError(f"CONNACK refused: {ack!r}")
        self._free = asyncio.Semaphore(self.window)
        self._rtask = asyncio.create_task(self._read_acks())

    async def _read_acks(self) -> None:
        r = self._reader
        while True:
            head = await r.readexactly(2)
            if head[1] & 0x80:  # long remaining length: not expected for PUBACK
                raise RuntimeError("unexpected packet")
            await r.readexactly(head[1])
            if head[0] >> 4 == 4:  # PUBACK
                self.acked += 1
                self._free.release()

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._free.acquire()
        self._pid = self._pid % 65535 + 1
        self._writer.write(mqtt_publish_packet(topic, payload, self._pid))
        self.sent += 1
        if self.sent % 64 == 0:
            await self._writer.drain()

    async def wait_all_acked(self, timeout: float) -> bool:
        import asyncio

        await self._writer.drain()
        end = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < end:
            if self._rtask.done():
                self._rtask.result()
            await asyncio.sleep(0.01)
        return self.acked >= self.sent

    async def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.write(b"\xe0\x00")  # DISCONNECT
                await self._writer.drain()
            except ConnectionError:
                pass
            self._writer.close()
        if self._rtask is not None:
            self._rtask.cancel()


def fleet(vehicles: int) -> list[tuple[str, str]]:
    """The seeded fleet: (vehicle id, MQTT topic) for each vehicle.

    Mostly gpsd-server's own JSON topic, plus JT/T 808 gateway and OwnTracks
    topics so every routing key shape the server consumes is partitioned.
    """
    out = []
    for i in range(vehicles):
        if i % 10 < 7:
            vid = f"V{i:05d}"
            topic = f"fleet/{vid}/fix"
        elif i % 10 < 9:
            phone = f"0138{i:08d}"
            vid = f"jt808:{phone}"
            topic = f"jt808/gw{i % 3}/{phone}/up"
        else:
            vid = f"ot:u{i}/d{i}"
            topic = f"owntracks/u{i}/d{i}"
        out.append((vid, topic))
    return out
