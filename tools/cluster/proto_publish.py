"""Publish a seeded fleet over MQTT (QoS 1) into the partitioning engine.

Each fix carries its vehicle's sequence number (1..fixes), so the check can
prove exactly-once storage and per-vehicle order. A vehicle always publishes
on the same MQTT connection, as a terminal does; vehicles are spread over
--connections connections. --rate paces the whole fleet (fixes/s, 0 = as fast
as the engine PUBACKs). Prints a JSON summary. Bounded by --timeout.

    python tools/cluster/proto_publish.py --vehicles 200 --fixes 100 --rate 1500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import aio_pika
from proto_common import AMQP_URL, MQTT_PORT, RawMqttPublisher, declare_topology, fleet


async def run(args) -> dict:
    # The MQTT plugin drops messages for which no queue is bound: make sure the
    # partition queues exist before the first fix.
    conn = await aio_pika.connect(args.amqp_url)
    async with conn:
        await declare_topology(await conn.channel())

    vehicles = fleet(args.vehicles)
    rng = random.Random(args.seed)
    start_pos = {vid: (30.5 + rng.random() * 0.3, 114.2 + rng.random() * 0.3) for vid, _ in vehicles}
    shards = [vehicles[i :: args.connections] for i in range(args.connections)]
    pubs = [RawMqttPublisher(args.mqtt_port, f"proto-pub-{i}", window=args.window) for i in range(args.connections)]
    for p in pubs:
        await p.connect()

    per_conn_rate = args.rate / args.connections if args.rate else 0.0
    t0 = time.perf_counter()
    deadline = t0 + args.timeout

    async def drive(pub: RawMqttPublisher, shard: list[tuple[str, str]]) -> None:
        n = 0
        base_ts = 1_700_000_000
        for seq in range(1, args.fixes + 1):
            for vid, topic in shard:
                lat, lon = start_pos[vid]
                payload = json.dumps(
                    {
                        "vid": vid,
                        "seq": seq,
                        "lat": round(lat + seq * 1e-4, 6),
                        "lon": round(lon + seq * 1e-4, 6),
                        "ts": base_ts + seq * 10,
                        "speed": 30.0,
                    }
                ).encode()
                await pub.publish(topic, payload)
                n += 1
                if per_conn_rate:
                    ahead = n / per_conn_rate - (time.perf_counter() - t0)
                    if ahead > 0.002:
                        await asyncio.sleep(ahead)
                if time.perf_counter() > deadline:
                    return

    await asyncio.gather(*(drive(p, s) for p, s in zip(pubs, shards)))
    t_sent = time.perf_counter()
    ok = all([await p.wait_all_acked(max(1.0, deadline - time.perf_counter())) for p in pubs])
    t_acked = time.perf_counter()
    for p in pubs:
        await p.close()
    sent = sum(p.sent for p in pubs)
    acked = sum(p.acked for p in pubs)
    return {
        "vehicles": args.vehicles,
        "fixes_per_vehicle": args.fixes,
        "connections": args.connections,
        "sent": sent,
        "pubacked": acked,
        "all_pubacked": ok and acked == args.vehicles * args.fixes,
        "send_seconds": round(t_sent - t0, 3),
        "puback_seconds": round(t_acked - t0, 3),
        "pubacked_per_s": round(acked / max(t_acked - t0, 1e-9)),
        "started_at": time.time() - (time.perf_counter() - t0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--fixes", type=int, default=100)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--rate", type=float, default=0.0, help="total fixes/s, 0 = unpaced")
    ap.add_argument("--window", type=int, default=500, help="QoS 1 in-flight window per connection")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--mqtt-port", type=int, default=MQTT_PORT)
    ap.add_argument("--amqp-url", default=AMQP_URL)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
