"""Stand-in for a `gpsd-server api` node: tails the hub feed the workers publish.

Binds its own exclusive, auto-delete queue to the gpsd.hub topic exchange
("pos.#" and "alert.#"), as each API node would to feed its own websocket
subscribers, counts positions and distinct (vehicle, seq), and prints a JSON
summary when idle for --exit-idle seconds (after the first message) or after
--max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aio_pika
from proto_common import AMQP_URL, HUB_EXCHANGE


async def run(args) -> dict:
    conn = await aio_pika.connect(args.amqp_url)
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=200)
        ex = await ch.declare_exchange(HUB_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        q = await ch.declare_queue("", exclusive=True, auto_delete=True)
        await q.bind(ex, "pos.#")
        await q.bind(ex, "alert.#")
        seen: set[tuple[str, int]] = set()
        stats = {"messages": 0, "positions": 0}
        last = [0.0]

        async def on_msg(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with msg.process():
                stats["messages"] += 1
                for pos in json.loads(msg.body):
                    stats["positions"] += 1
                    seen.add((pos["vid"], pos["seq"]))
                last[0] = time.monotonic()

        await q.consume(on_msg)
        print(json.dumps({"ev": "api_node_ready", "t": time.time()}), flush=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.max_seconds:
            await asyncio.sleep(0.2)
            if last[0] and time.monotonic() - last[0] > args.exit_idle:
                break
        return {
            "ev": "api_node_done",
            "t": time.time(),
            "hub_messages": stats["messages"],
            "positions": stats["positions"],
            "distinct_fixes": len(seen),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--amqp-url", default=AMQP_URL)
    ap.add_argument("--exit-idle", type=float, default=5)
    ap.add_argument("--max-seconds", type=float, default=300)
    print(json.dumps(asyncio.run(run(ap.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
