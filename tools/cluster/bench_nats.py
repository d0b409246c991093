"""Feature probe and engine ceiling of Debian 12's NATS 2.9 for the comparison.

Checks, against the private NATS started by ``GPSD_CLUSTER_NATS=1
tools/cluster/services.sh start``:

1. whether the account subject mapping ``fleet.*.fix ->
   part.{{partition(12,1)}}.fleet.{{wildcard(1)}}.fix`` applies to messages
   published by MQTT clients (terminals) or only to NATS clients;
2. the MQTT QoS 1 publish -> JetStream stream -> pull consumer ceiling, with a
   trivial consumer (ack only), in msg/s.

Prints one JSON object. Bounded: at most ``--count`` messages, ``--timeout``
seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time

import nats
import paho.mqtt.client as mqtt
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from proto_common import RawMqttPublisher, cpu_seconds, rss_kb


def mqtt_publish(port: int, topics: list[str], count: int, inflight: int = 1000) -> float:
    """Publish count QoS 1 messages round-robin over topics; return seconds until all PUBACKed."""
    done = threading.Event()
    acked = 0

    def on_publish(client, userdata, mid, rc, props):
        nonlocal acked
        acked += 1
        if acked >= count:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"nats-bench-{os.getpid()}", clean_session=True)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    for i in range(count):
        c.publish(topics[i % len(topics)], json.dumps({"seq": i}).encode(), qos=1)
    done.wait(120)
    t1 = time.perf_counter()
    c.loop_stop()
    c.disconnect()
    return t1 - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats-url", default=os.environ.get("GPSD_CLUSTER_NATS_URL", "nats://127.0.0.1:15630"))
    ap.add_argument("--mqtt-port", type=int, default=int(os.environ.get("GPSD_CLUSTER_NATS_MQTT_PORT", "18943")))
    ap.add_argument("--pidfile", default=os.environ.get("GPSD_CLUSTER_NATS_PIDFILE", ""))
    ap.add_argument("--count", type=int, default=60000)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()

    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    for name in ("GPS_RAW", "GPS_PART"):
        try:
            await js.delete_stream(name)
        except Exception:
            pass
    # One stream captures the mapped subjects, one the raw ones: whichever fills shows
    # whether the mapping applied to the MQTT publisher.
    await js.add_stream(StreamConfig(name="GPS_PART", subjects=["part.*.fleet.*.fix"], storage=StorageType.FILE))
    await js.add_stream(StreamConfig(name="GPS_RAW", subjects=["fleet.*.fix"], storage=StorageType.FILE))

    out: dict[str, object] = {"nats_server": "2.9.10 (Debian 12)"}
    # 1. Mapping probe: one MQTT publish, one NATS publish.
    mqtt_publish(args.mqtt_port, ["fleet/PROBE1/fix"], 1)
    await nc.publish("fleet.PROBE2.fix", b"{}")
    await nc.flush()
    await asyncio.sleep(0.5)
    part = await js.stream_info("GPS_PART")
    raw = await js.stream_info("GPS_RAW")
    subjects_part = []
    for seq in range(1, part.state.messages + 1):
        m = await js.get_msg("GPS_PART", seq)
        subjects_part.append(m.subject)
    subjects_raw = []
    for seq in range(1, raw.state.messages + 1):
        m = await js.get_msg("GPS_RAW", seq)
        subjects_raw.append(m.subject)
    out["mapping_probe"] = {"mapped_stream_subjects": subjects_part, "raw_stream_subjects": subjects_raw}
    out["mapping_applies_to_mqtt_publishers"] = any("PROBE1" in s for s in subjects_part)

    # 2. Ceiling: MQTT QoS 1 publish (raw publisher, --connections connections)
    # into the stream that actually receives MQTT traffic, one trivial pull
    # consumer acking everything, concurrently.
    target = "GPS_PART" if out["mapping_applies_to_mqtt_publishers"] else "GPS_RAW"
    await js.purge_stream(target)
    await js.add_consumer(target, ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.ALL, max_ack_pending=20000))
    sub = await js.pull_subscribe_bind("bench", stream=target)
    topics = [f"fleet/V{i:05d}/fix" for i in range(1000)]
    pid = int(open(args.pidfile).read().strip()) if args.pidfile and os.path.exists(args.pidfile) else None
    cpu0 = cpu_seconds(pid) if pid else 0.0
    pubs = [RawMqttPublisher(args.mqtt_port, f"nats-bench-{i}", window=500) for i in range(args.connections)]
    for p in pubs:
        await p.connect()

    async def drive(i: int) -> None:
        mine = topics[i :: args.connections]
        for n in range(args.count // args.connections):
            await pubs[i].publish(mine[n % len(mine)], json.dumps({"seq": n}).encode())
        await pubs[i].wait_all_acked(args.timeout)

    t0 = time.perf_counter()
    pub = asyncio.gather(*(drive(i) for i in range(args.connections)))
    got = 0
    total = (args.count // args.connections) * args.connections
    deadline = t0 + args.timeout
    t_pub = None
    while got < total and time.perf_counter() < deadline:
        if t_pub is None and pub.done():
            t_pub = time.perf_counter()
        try:
            msgs = await sub.fetch(1000, timeout=1)
        except nats.errors.TimeoutError:
            continue
        got += len(msgs)
        await msgs[-1].ack()
    t1 = time.perf_counter()
    await pub
    t_pub = t_pub or time.perf_counter()
    cpu1 = cpu_seconds(pid) if pid else 0.0
    for p in pubs:
        await p.close()
    out["ceiling"] = {
        "messages": total,
        "consumed": got,
        "publish_pubacked_seconds": round(t_pub - t0, 3),
        "end_to_end_seconds": round(t1 - t0, 3),
        "end_to_end_msg_per_s": round(got / (t1 - t0)),
        "engine_cpu_seconds": round(cpu1 - cpu0, 2),
        "engine_rss_kb": rss_kb(pid) if pid else None,
        "stream": target,
    }
    for name in ("GPS_RAW", "GPS_PART"):
        await js.delete_stream(name)
    await nc.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
