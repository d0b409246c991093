"""End-to-end benchmark: the real broker, server and database, one table out.

Run: .venv/bin/python tools/bench_e2e.py [--fixes 100000] [--vehicles 10000] ...

Starts the private services if needed (tools/services.sh), builds a
benchmark city (``--zones`` polygons and ``--routes`` routes near the demo
city, ``--vehicles`` vehicles, a third of them permitted muck trucks) in a
temporary folder, uses its own database (``gpsd_bench_e2e``, recreated), and
runs the server as a subprocess. Cases:

* **ceilings**, measured in the same run: a bare paho subscriber draining N
  queued QoS 1 messages from the same broker, and a bare binary COPY of N rows
  into a hypertable shaped like ``fixes``;
* **single-fix** and **batched** (50 fixes per message): N messages are queued
  at the broker for the server's persistent session while it is stopped, then
  the server starts and drains them; rates are measured from the first message
  received to the last row committed, so the publisher's own speed does not
  count. 1% of the single-fix messages are malformed (rejected/s);
* **latency**: the server runs live while a paced publisher sends
  ``--rate`` fixes/s; one vehicle in 20 sets an SOS alarm bit on every other
  round of the fleet and clears it on the next; the time from publish to the alert's arrival on
  /ws/live gives p50/p95/p99.

Server CPU is user+system time of the server process over the drain; peak
RSS is the process's high-water mark; per-vehicle memory is the RSS growth
from an idle server to one holding every vehicle's state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import websockets
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parent.parent
PG_PORT = int(os.environ.get("GPSD_PG_PORT", "55432"))
MQTT_PORT = int(os.environ.get("GPSD_MQTT_PORT", "18830"))
ADMIN_DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
DB = "gpsd_bench_e2e"
DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/{DB}"
LON0, LAT0 = 112.35, 28.57
SOS = 1


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- the benchmark city ---------------------------------------------------------


def write_city(folder: Path, *, zones: int, routes: int, vehicles: int, seed: int) -> None:
    rng = random.Random(seed)
    deg = 0.1  # about 10 x 11 km
    feats: list[dict[str, Any]] = []
    kinds = ("grid", "speed_zone", "construction_site", "disposal_site", "prohibited", "plant", "district")
    for i in range(zones):
        cx, cy = LON0 + rng.uniform(-deg, deg), LAT0 + rng.uniform(-deg, deg)
        r = rng.uniform(0.002, 0.004)
        corners = ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))
        ring = [[round(cx + r * dx, 6), round(cy + r * dy, 6)] for dx, dy in corners]
        kind = kinds[i % len(kinds)]
        props: dict[str, Any] = {"id": f"Z{i}", "name": f"zone {i}", "kind": kind}
        if kind == "speed_zone":
            props["speed_limit_kmh"] = 30
        if kind == "prohibited":
            props["classes"] = ["muck_truck"]
        feats.append({"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    sites = [f["properties"]["id"] for f in feats if f["properties"]["kind"] == "construction_site"]
    dumps = [f["properties"]["id"] for f in feats if f["properties"]["kind"] == "disposal_site"]
    for i in range(routes):
        x, y = LON0 + rng.uniform(-deg, deg), LAT0 + rng.uniform(-deg, deg)
        line = []
        for _ in range(12):
            line.append([round(x, 6), round(y, 6)])
            x, y = x + rng.uniform(-0.01, 0.01), y + rng.uniform(-0.01, 0.01)
        feats.append(
            {"type": "Feature", "properties": {"id": f"R{i}", "name": f"route {i}", "kind": "route"},
             "geometry": {"type": "LineString", "coordinates": line}}
        )  # fmt: skip
    (folder / "bench.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    fleet = []
    for i in range(vehicles):
        cls = ("muck_truck", "mixer_truck", "patrol", "other")[i % 4] if i % 3 else "muck_truck"
        v: dict[str, Any] = {"id": f"V{i:05d}", "plate": f"湘A·B{i:05d}", "class": cls, "company": f"company {i % 40}"}
        if cls == "muck_truck" and sites and dumps and routes:
            v["permits"] = [{"id": f"P{i}", "origin": rng.choice(sites), "destination": rng.choice(dumps),
                             "routes": [f"R{i % routes}"], "hours": {"from": "00:00", "to": "00:00"}}]  # fmt: skip
        fleet.append(v)
    (folder / "vehicles.json").write_text(json.dumps({"vehicles": fleet}, ensure_ascii=False))


def fix_payload(vehicle: int, ts: float, i: int, alarm: int = 0) -> dict[str, Any]:
    # Vehicles drive east-north-east at about 36 km/h from spread-out starts.
    rng = random.Random(vehicle)
    lon = LON0 + rng.uniform(-0.08, 0.08) + i * 0.001
    lat = LAT0 + rng.uniform(-0.08, 0.08) + i * 0.0003
    return {"ts": round(ts, 3), "lon": round(lon, 6), "lat": round(lat, 6), "speed_kmh": 36.0, "heading": 70,
            "alarm": alarm, "sensors": {"loaded": True, "cover_closed": True}}  # fmt: skip


# -- MQTT helpers ------------------------------------------------------------------


def client(client_id: str, *, persistent: bool) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600 if persistent else 0
    c.connect("127.0.0.1", MQTT_PORT, clean_start=not persistent, properties=props)
    return c


def publish_all(messages: list[tuple[str, bytes]], *, client_id: str = "bench-pub") -> float:
    """Publish QoS 1 and wait for every PUBACK; returns the seconds taken."""
    c = client(client_id, persistent=False)
    c.loop_start()
    t0 = time.perf_counter()
    window = 1000  # paho refuses to queue without bound: publish in acknowledged windows
    for i in range(0, len(messages), window):
        infos = [c.publish(t, p, qos=1) for t, p in messages[i : i + window]]
        for info in infos:
            info.wait_for_publish(60)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return dt


def bare_drain_rate(n: int, payload: bytes) -> float:
    """A bare paho subscriber draining n queued QoS 1 messages."""
    cid = f"bench-bare-{os.getpid()}"
    sub = client(cid, persistent=True)
    sub.subscribe("benchbare/+/fix", qos=1)
    sub.loop(1.0)
    sub.disconnect()
    publish_all([(f"benchbare/V{i % 10000:05d}/fix", payload) for i in range(n)])
    got = {"n": 0, "t0": 0.0, "t1": 0.0}
    done = threading.Event()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        if got["n"] == 0:
            got["t0"] = time.perf_counter()
        got["n"] += 1
        if got["n"] >= n:
            got["t1"] = time.perf_counter()
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0  # drop the session after this run
    props.ReceiveMaximum = 2000
    sub.connect("127.0.0.1", MQTT_PORT, clean_start=False, properties=props)
    sub.loop_start()
    done.wait(300)
    sub.disconnect()
    sub.loop_stop()
    return n / max(got["t1"] - got["t0"], 1e-9)


# -- database ----------------------------------------------------------------------


def recreate_database() -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def bare_copy_rate(n: int) -> float:
    """Binary COPY of n rows into a hypertable shaped like fixes."""
    from gpsd_server.model import Fix, Sensors
    from gpsd_server.store.batch import COLUMNS, TYPES, fix_row

    now = time.time()
    rows = [
        fix_row(Fix(f"V{i % 10000:05d}", now - n + i, 112.3, 28.5, now, 36.0, 70.0, sensors=Sensors(loaded=True)))
        for i in range(n)
    ]
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE fixes INCLUDING DEFAULTS)")
        conn.execute("CREATE UNIQUE INDEX ON bench_copy (vehicle_id, ts DESC)")
        with suppress(psycopg.Error):
            conn.execute("SELECT create_hypertable('bench_copy', by_range('ts', interval '1 day'))")
        t0 = time.perf_counter()
        sql = f"COPY bench_copy ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
            copy.set_types(list(TYPES))
            for r in rows:
                copy.write_row(r)
        return n / (time.perf_counter() - t0)


# -- the server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    http: str
    token: str

    def stats(self) -> dict[str, Any]:
        for _ in range(10):
            with suppress(httpx.TimeoutException):
                r = httpx.get(f"{self.http}/api/stats", headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
                return dict(r.json())
            log("the server did not answer /api/stats within 10 s; retrying")
        raise SystemExit("the server stopped answering")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def start_server(city: Path, port: int, token: str, log_path: Path) -> ServerProcess:
    env = {
        **os.environ,
        "GPSD_DATABASE__DSN": DSN,
        "GPSD_MQTT__PORT": str(MQTT_PORT),
        "GPSD_MQTT__CLIENT_ID": "bench-server",
        "GPSD_MQTT__TOPIC_PREFIX": "bench",
        "GPSD_HTTP__PORT": str(port),
        "GPSD_GEOFENCES__DIR": str(city),
        "GPSD_INGEST__MAX_AGE_DAYS": "3650",
        "GPSD_LOG_LEVEL": "WARNING",
        # One counting client that must see every position: a deep send queue
        # (the default drops a client that falls 2,000 messages behind).
        "GPSD_HTTP__WS_SEND_QUEUE": "1000000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpsd_server", "run"], env=env, cwd=REPO,
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", token)
    for _ in range(300):
        with suppress(httpx.HTTPError):
            if httpx.get(f"{server.http}/healthz", timeout=1).status_code == 200:
                return server
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {log_path}")
        time.sleep(0.1)
    raise SystemExit(f"server did not become healthy; see {log_path}")


def make_token() -> str:
    from gpsd_server.api.auth import digest, new_token

    token = new_token()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("INSERT INTO api_tokens (name, role, digest) VALUES ('bench', 'admin', %s)", (digest(token),))
    return token


def count_positions(url: str, stop: threading.Event, out: dict[str, float]) -> None:
    """Count position messages on /ws/live (its own thread, so it cannot starve the poller)."""
    from websockets.sync.client import connect

    with connect(url, max_size=None, close_timeout=2) as ws:
        ws.recv()
        while not stop.is_set():
            try:
                raw = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                out["dropped"] = 1
                return
            if '"position"' in (raw if isinstance(raw, str) else raw.decode()):
                out["n"] += 1
                out["t0"] = out["t0"] or time.perf_counter()
                out["t1"] = time.perf_counter()


def drain_case(name: str, city: Path, port: int, token: str, messages: list[tuple[str, bytes]], fixes: int,
               log_path: Path) -> dict[str, Any]:  # fmt: skip
    """Queue messages for the stopped server's session, then time the drain."""
    log(f"{name}: queueing {len(messages):,} messages ({fixes:,} fixes) at the broker")
    publish_all(messages)
    server = start_server(city, port, token, log_path)
    rss_idle = server.rss_mb()
    cpu0 = server.cpu_s()
    # A fresh process: its counters start at zero (it may already be draining).
    base = {"messages_received": 0, "db_rows_inserted": 0, "db_duplicates": 0}
    ws_out = {"n": 0.0, "t0": 0.0, "t1": 0.0, "dropped": 0.0}

    def watch() -> dict[str, Any]:
        stop = threading.Event()
        counter = threading.Thread(
            target=count_positions, args=(f"ws://127.0.0.1:{port}/ws/live?token={token}", stop, ws_out), daemon=True
        )
        counter.start()
        t_first = t_msgs = t_rows = 0.0
        deadline = time.perf_counter() + 600
        s: dict[str, Any] = {"rejected": {}}
        while time.perf_counter() < deadline:
            s = server.stats()
            got = s["messages_received"] - base["messages_received"]
            rows = s["db_rows_inserted"] - base["db_rows_inserted"] + s["db_duplicates"] - base["db_duplicates"]
            now = time.perf_counter()
            if got and not t_first:
                t_first = now
            if got >= len(messages) and not t_msgs:
                t_msgs = now
            if rows >= fixes * 0.99 and s["db_queue_rows"] == 0 and t_msgs:
                t_rows = now
                break
            time.sleep(0.05)
        stop.set()
        counter.join(10)
        return {"t_first": t_first, "t_msgs": t_msgs, "t_rows": t_rows, "rejected": s["rejected"]}

    try:
        times = watch()
    except BaseException:
        server.proc.kill()
        raise
    cpu = server.cpu_s() - cpu0
    result = {
        "name": name,
        "messages": len(messages),
        "fixes": fixes,
        "msgs_per_s": len(messages) / max(times["t_msgs"] - times["t_first"], 1e-9),
        "db_fixes_per_s": fixes / max(times["t_rows"] - times["t_first"], 1e-9),
        "ws_per_s": ws_out["n"] / max(ws_out["t1"] - ws_out["t0"], 1e-9) if ws_out["n"] else 0.0,
        "ws_dropped": bool(ws_out["dropped"]),
        "rejected_per_s": sum(times["rejected"].values()) / max(times["t_msgs"] - times["t_first"], 1e-9),
        "cpu_pct": 100 * cpu / max(times["t_rows"] - times["t_first"], 1e-9),
        "rss_peak_mb": server.rss_mb("VmHWM"),
        "rss_idle_mb": rss_idle,
        "rss_end_mb": server.rss_mb(),
    }
    server.stop()
    return result


def latency_case(city: Path, port: int, token: str, rate: int, seconds: int, vehicles: int,
                 log_path: Path) -> dict[str, Any]:  # fmt: skip
    server = start_server(city, port, token, log_path)
    sent: dict[tuple[str, str], float] = {}
    latencies: list[float] = []

    def publisher(stop: threading.Event) -> None:
        c = client(f"bench-lat-{os.getpid()}", persistent=False)
        c.loop_start()
        t0 = time.perf_counter()
        i = 0
        while not stop.is_set() and time.perf_counter() - t0 < seconds:
            target = t0 + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            v = i % vehicles
            step = i // vehicles
            # One vehicle in 20 sets SOS on odd rounds and clears it on even ones.
            alarm = SOS if v % 20 == 0 and step % 2 == 1 else 0
            ts = time.time()
            body = fix_payload(v, ts, step, alarm)
            if alarm:
                sent[(f"V{v:05d}", datetime.fromtimestamp(body["ts"], UTC).isoformat().replace("+00:00", "Z"))] = ts
            c.publish(f"bench/V{v:05d}/fix", json.dumps(body).encode(), qos=1)
            i += 1
        c.disconnect()
        c.loop_stop()

    async def listen() -> None:
        stop = threading.Event()
        th = threading.Thread(target=publisher, args=(stop,), daemon=True)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live?token={token}", max_size=None) as ws:
            await ws.recv()
            th.start()
            end = time.perf_counter() + seconds + 3
            while time.perf_counter() < end:
                with suppress(TimeoutError):
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    if msg.get("type") == "alert" and msg.get("phase") == "start" and msg.get("kind") == "sos":
                        t_pub = sent.get((msg["vehicle_id"], msg["ts"]))
                        if t_pub is not None:
                            latencies.append((time.time() - t_pub) * 1000)
        stop.set()
        th.join()

    try:
        asyncio.run(listen())
    finally:
        server.stop()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {"alerts": len(latencies), "sent": len(sent), "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixes", type=int, default=100_000, help="fixes per drain case")
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--zones", type=int, default=1000)
    ap.add_argument("--routes", type=int, default=100)
    ap.add_argument("--rate", type=int, default=2000, help="fixes/s in the latency case")
    ap.add_argument("--seconds", type=int, default=20, help="duration of the latency case")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    subprocess.run(["bash", str(REPO / "tools" / "services.sh"), "start"], check=True)
    recreate_database()
    work = Path(tempfile.mkdtemp(prefix="gpsd-bench-"))
    city = work / "city"
    city.mkdir()
    write_city(city, zones=args.zones, routes=args.routes, vehicles=args.vehicles, seed=args.seed)
    log_path = work / "server.log"
    port = free_port()
    log(f"city: {args.zones} zones, {args.routes} routes, {args.vehicles} vehicles in {city}; server log {log_path}")

    # First start: migrations, and the server's persistent session on the broker.
    server = start_server(city, port, "", log_path)
    server.stop()
    token = make_token()

    payload = json.dumps(fix_payload(1, time.time(), 0)).encode()
    log("ceiling: bare paho QoS 1 drain")
    bare_mqtt = bare_drain_rate(args.fixes, payload)
    log("ceiling: bare binary COPY")
    bare_copy = bare_copy_rate(args.fixes)

    t_base = time.time() - 86400
    single = []
    for i in range(args.fixes):
        v, step = i % args.vehicles, i // args.vehicles
        body = json.dumps(fix_payload(v, t_base + step * 10, step)).encode()
        single.append((f"bench/V{v:05d}/fix", b"{broken" if i % 100 == 99 else body))
    r_single = drain_case("single-fix", city, port, token, single, args.fixes - args.fixes // 100, log_path)

    batched = []
    t_base2 = t_base + 40_000
    per_vehicle = max(1, args.fixes * 5 // args.vehicles)
    for v in range(args.vehicles):
        for b0 in range(0, per_vehicle, 50):
            items = [fix_payload(v, t_base2 + (b0 + k) * 10, b0 + k) for k in range(min(50, per_vehicle - b0))]
            batched.append((f"bench/V{v:05d}/fix", json.dumps(items).encode()))
    n_batched = args.vehicles * per_vehicle
    r_batched = drain_case("batched x50", city, port, token, batched, n_batched, log_path)

    log(f"latency: {args.rate} fixes/s for {args.seconds} s")
    lat = latency_case(city, port, token, args.rate, args.seconds, args.vehicles, log_path)

    per_vehicle_kb = (r_single["rss_end_mb"] - r_single["rss_idle_mb"]) * 1024 / args.vehicles
    cpu = os.cpu_count()
    print(f"\n## End-to-end benchmark — {datetime.now(UTC):%Y-%m-%d}, {cpu} cores, "
          f"{args.vehicles:,} vehicles, {args.zones:,} zones, {args.routes} routes\n")  # fmt: skip
    print("| case | messages/s | fixes/s into DB | positions/s on ws | rejected/s | server CPU | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in (r_single, r_batched):
        print(
            f"| {r['name']} ({r['fixes']:,} fixes) | {r['msgs_per_s']:,.0f} | {r['db_fixes_per_s']:,.0f} |"
            f" {r['ws_per_s']:,.0f}{' (client dropped)' if r['ws_dropped'] else ''} |"
            f" {r['rejected_per_s']:,.0f} | {r['cpu_pct']:.0f}% | {r['rss_peak_mb']:.0f} MB |"
        )
    print(f"| ceiling: bare paho QoS 1 drain | {bare_mqtt:,.0f} | | | | | |")
    print(f"| ceiling: bare binary COPY into a hypertable | | {bare_copy:,.0f} | | | | |")
    print(f"\nsingle-fix drain / bare paho drain: {r_single['msgs_per_s'] / bare_mqtt:.2f} (target >= 0.8)")
    print(f"batched fixes/s into the database: {r_batched['db_fixes_per_s']:,.0f} (target >= 100,000)")
    print(
        f"alert latency publish -> websocket at {args.rate:,} fixes/s: p50 {lat['p50']:.1f} ms, "
        f"p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms over {lat['alerts']} alerts "
        f"(target p50 <= 10 ms, p99 <= 50 ms)"
    )
    if per_vehicle_kb > 0:
        print(f"memory per vehicle (RSS growth idle -> {args.vehicles:,} vehicles): {per_vehicle_kb:.1f} KB")
    else:  # the server starts draining before it can be sampled idle
        print("memory per vehicle: not measured (the server was already busy when sampled idle)")


if __name__ == "__main__":
    main()
