"""Drain a persistent session's queue: bare paho against gpsd_server.mqtt.

For each client in turn: a persistent session is created and subscribed to a
fresh topic, N QoS 1 messages of ~SIZE bytes are published into it while it is
offline (not measured), then the client connects and drains them, acknowledging
each (paho: ``manual_ack`` and ``ack()`` per message, public API only; ours:
``batches()`` and one ``ack()`` per batch). Measured over the drain alone: wall
time (msg/s), CPU of this process (``time.process_time``; µs per message) and
CPU of the broker process (``/proc/<pid>/stat``; µs per message).

    .venv/bin/python tools/bench_mqtt.py [--port 18931] [-n 100000] [--size 150] [--rounds 1]

The broker is the one on 127.0.0.1:PORT (``tools/services.sh start``); its pid
is found through /proc (the mosquitto process whose config listens on PORT).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpsd_server.mqtt import MqttClient

CLK_TCK = os.sysconf("SC_CLK_TCK")


def broker_pid(port: int) -> int | None:
    """The pid of the mosquitto whose config file has ``listener PORT``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"mosquitto") or b"-c" not in argv:
            continue
        conf = Path(argv[argv.index(b"-c") + 1].decode())
        try:
            lines = conf.read_text().splitlines()
        except OSError:
            continue
        if any(line.split()[:2] == ["listener", str(port)] for line in lines if line.strip()):
            return int(proc.name)
    return None


def broker_cpu_s(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


@dataclass
class Result:
    name: str
    n: int
    wall_s: float
    cpu_s: float
    broker_s: float

    def row(self) -> str:
        return (
            f"{self.name:<22} {self.n:>8,} msgs  {self.n / self.wall_s:>9,.0f} msg/s  "
            f"client {self.cpu_s / self.n * 1e6:6.2f} µs/msg  broker {self.broker_s / self.n * 1e6:6.2f} µs/msg"
        )


async def fill(port: int, client_id: str, topic: str, n: int, size: int, protocol: int) -> None:
    """Create the persistent session, subscribe, go away, publish n messages into it."""
    sub = MqttClient(
        host="127.0.0.1", port=port, client_id=client_id, protocol=protocol, clean_start=protocol == 5
    )  # a 3.1.1 clean session ends at disconnect
    await sub.connect()
    await sub.subscribe([topic], qos=1)
    await sub.close()
    pub = MqttClient(
        host="127.0.0.1", port=port, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}", clean_start=True, session_expiry_s=0
    )
    await pub.connect()
    body = b"{" + b"x" * (size - len(topic) - 8) + b"}"
    window = 2000
    for start in range(0, n, window):
        await asyncio.gather(
            *(pub.publish(topic, body, qos=1, timeout_s=60) for _ in range(start, min(n, start + window)))
        )
    await pub.close()


async def forget(port: int, client_id: str, protocol: int) -> None:
    c = MqttClient(
        host="127.0.0.1", port=port, client_id=client_id, protocol=protocol, clean_start=True, session_expiry_s=0
    )
    await c.connect()
    await c.close()


def measure(name: str, n: int, pid: int | None, drain: Callable[[], None]) -> Result:
    b0 = broker_cpu_s(pid)
    c0 = time.process_time()
    w0 = time.perf_counter()
    drain()
    wall = time.perf_counter() - w0
    cpu = time.process_time() - c0
    return Result(name, n, wall, cpu, broker_cpu_s(pid) - b0)


def drain_paho(port: int, client_id: str, n: int, receive_maximum: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    count = 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)

    def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        c.ack(msg.mid, msg.qos)
        count += 1
        if count >= n:
            c.disconnect()

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = receive_maximum
    client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
    client.loop_forever()
    if count < n:
        raise SystemExit(f"paho drained {count} of {n}")


async def drain_ours(port: int, client_id: str, n: int, receive_maximum: int, protocol: int) -> None:
    c = MqttClient(host="127.0.0.1", port=port, client_id=client_id, receive_maximum=receive_maximum, protocol=protocol)
    if not await c.connect():
        raise SystemExit("session not present")
    count = 0
    async for batch in c.batches():
        c.ack(batch)
        count += len(batch)
        if count >= n:
            break
    await c.close()
    s = c.stats
    if s.fast_path_decodes != s.messages_in:
        raise SystemExit(f"fast path not used: {s}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("GPSD_MQTT_PORT", "18931")))
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=150, help="approximate PUBLISH size in bytes")
    ap.add_argument("--receive-maximum", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-paho", action="store_true")
    args = ap.parse_args()
    pid = broker_pid(args.port)
    print(f"broker 127.0.0.1:{args.port} pid {pid}; {args.n:,} QoS 1 messages of ~{args.size} bytes each drain")
    tag = uuid.uuid4().hex[:8]
    results: list[Result] = []
    for r in range(args.rounds):
        cases: list[tuple[str, int]] = [] if args.no_paho else [("paho (bare, v5)", 5)]
        cases += [("gpsd_server.mqtt v5", 5), ("gpsd_server.mqtt v3.1.1", 4)]
        for name, protocol in cases:
            cid = f"bench-{tag}-{r}-{protocol}-{'paho' if 'paho' in name else 'ours'}"
            topic = f"bench/{tag}/{r}/{cid}"
            asyncio.run(fill(args.port, cid, topic, args.n, args.size, protocol))
            time.sleep(0.5)  # let the broker settle after the publisher
            if "paho" in name:
                drain = functools.partial(drain_paho, args.port, cid, args.n, args.receive_maximum)
            else:
                drain = functools.partial(
                    asyncio.run, drain_ours(args.port, cid, args.n, args.receive_maximum, protocol)
                )
            res = measure(name, args.n, pid, drain)
            asyncio.run(forget(args.port, cid, protocol))
            results.append(res)
            print(res.row(), flush=True)


if __name__ == "__main__":
    main()
