"""Memory per idle MQTT connection on the private engine (RabbitMQ by default).

Opens --count MQTT 3.1.1 connections (clean session, no subscription), as
terminals that publish only, and prints the engine's RSS before and after.
Bounded: holds them --hold seconds, then disconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource

from proto_common import MQTT_PORT, RawMqttPublisher, rss_kb


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--port", type=int, default=MQTT_PORT)
    ap.add_argument("--pidfile", default=os.environ.get("GPSD_CLUSTER_RABBITMQ_PIDFILE", ""))
    ap.add_argument("--hold", type=float, default=3)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.count + 256)), hard))
    pid = int(open(args.pidfile).read().split()[0])
    before = rss_kb(pid)
    conns = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(args.count):
        c = RawMqttPublisher(args.port, f"conn-bench-{i}", window=1)
        await c.connect()
        conns.append(c)
    t1 = loop.time()
    await asyncio.sleep(args.hold)
    after = rss_kb(pid)
    for c in conns:
        await c.close()
    print(
        json.dumps(
            {
                "connections": args.count,
                "connect_seconds": round(t1 - t0, 2),
                "connects_per_s": round(args.count / (t1 - t0)),
                "engine_rss_kb_before": before,
                "engine_rss_kb_after": after,
                "kb_per_connection": round((after - before) / args.count, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
