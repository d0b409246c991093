"""History benchmark: load a fleet-day of fixes with COPY, then time the read paths.

    .venv/bin/python tools/bench_history.py                      # 1,000 vehicles x 1 day at 10 s (8.6 M fixes)
    .venv/bin/python tools/bench_history.py --vehicles 100       # smaller
    .venv/bin/python tools/bench_history.py --skip-load          # reuse the loaded database

Creates (or recreates) the database ``gpsd_bench`` on the private PostgreSQL,
loads synthetic tracks for the demo city's vehicles (then ``BV-nnnn`` ones)
with COPY, builds the hourly mileage summary the track writer would have kept
(``store.batch.rebuild_hours``),
starts a server in-process against it and prints: one vehicle-day as
GeoJSON over HTTP (p50 of 20), the daily mileage report, patrol coverage
over the day for the 58 grids, and replay start latency (start message to
first position, p50 of 10), each with the process CPU per request (the
server runs in this process, beside its HTTP client; PostgreSQL's CPU is not
in it): on a shared machine the wall times are noisy, the CPU less so.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import psycopg
import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PG_PORT = int(os.environ.get("GPSD_PG_PORT", "55432"))
ADMIN_DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
BBOX = (112.25, 28.50, 112.55, 28.75)


def vehicle_ids(n: int) -> list[tuple[str, str]]:
    """(id, class): the demo city's vehicles first, so patrol cars and permits exist."""
    demo = json.loads((REPO / "geofences" / "vehicles.json").read_text(encoding="utf-8"))["vehicles"]
    # Interleave the classes so a small run still has patrol cars and muck trucks.
    rank: dict[str, int] = {}
    keyed = []
    for v in demo:
        cls = v.get("class", "other")
        rank[cls] = rank.get(cls, -1) + 1
        keyed.append((rank[cls], v["id"], cls))
    out = [(vid, cls) for _, vid, cls in sorted(keyed)][:n]
    out += [(f"BV-{i:04d}", "other") for i in range(n - len(out))]
    return out


def synthetic_day(rng: np.random.Generator, points: int, step_s: int) -> tuple[np.ndarray, ...]:
    """A random drive with stops: speeds 0-60 km/h in runs, headings that wander, kept in the city box."""
    runs = rng.integers(30, 200, size=points // 30 + 2)
    speed = np.repeat(rng.choice([0.0, 20.0, 35.0, 50.0], size=len(runs), p=[0.4, 0.2, 0.3, 0.1]), runs)[:points]
    speed = np.clip(speed + rng.normal(0, 3, points) * (speed > 0), 0, 80)
    heading = np.cumsum(rng.normal(0, 12, points)) % 360
    step = speed / 3.6 * step_s
    dx = step * np.sin(np.radians(heading)) / 97_900
    dy = step * np.cos(np.radians(heading)) / 111_200
    lon = rng.uniform(BBOX[0], BBOX[2]) + np.cumsum(dx)
    lat = rng.uniform(BBOX[1], BBOX[3]) + np.cumsum(dy)
    # Fold back into the box (a reflection keeps the steps' lengths).
    span_x, span_y = BBOX[2] - BBOX[0], BBOX[3] - BBOX[1]
    lon = BBOX[0] + span_x - np.abs((lon - BBOX[0]) % (2 * span_x) - span_x)
    lat = BBOX[1] + span_y - np.abs((lat - BBOX[1]) % (2 * span_y) - span_y)
    return lon, lat, speed, heading


def load(dsn: str, vehicles: list[tuple[str, str]], day_start: datetime, step_s: int, seed: int) -> int:
    points = 86400 // step_s
    rng = np.random.default_rng(seed)
    base = np.datetime64(day_start.astimezone(UTC).replace(tzinfo=None), "s")
    stamps = np.datetime_as_string(base + np.arange(points) * np.timedelta64(step_s, "s"), unit="s")
    stamps = np.char.add(stamps, "+00")
    total = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vehicles (id, class, company) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [(v, c, f"公司{i % 20:02d}") for i, (v, c) in enumerate(vehicles)],
            )
        began = time.perf_counter()
        for k in range(0, len(vehicles), 25):
            lines = []
            for vid, _ in vehicles[k : k + 25]:
                lon, lat, speed, heading = synthetic_day(rng, points, step_s)
                lines += [
                    f"{vid}\t{t}\t{t}\t{x:.6f}\t{y:.6f}\t{s:.1f}\t{h:.0f}\n"
                    for t, x, y, s, h in zip(
                        stamps, lon.tolist(), lat.tolist(), speed.tolist(), heading.tolist(), strict=True
                    )
                ]
            with (
                conn.cursor() as cur,
                cur.copy("COPY fixes (vehicle_id, ts, received_at, lon, lat, speed_kmh, heading) FROM STDIN") as copy,
            ):
                copy.write("".join(lines))
            total += len(lines)
            print(f"\r  loaded {total:,} fixes ({total / (time.perf_counter() - began):,.0f}/s)", end="", flush=True)
        conn.execute("ANALYZE fixes")
    print()
    return total


CPU_MS: list[float] = []  # process CPU of the last timed() runs (server and HTTP client share this process)


async def timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    out = []
    CPU_MS.clear()
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
        CPU_MS.append((time.process_time() - c) * 1000)
    return out


def line(name: str, ms: list[float], target: str) -> None:
    cpu = f"   process CPU p50 {statistics.median(CPU_MS):7.1f} ms" if CPU_MS else ""
    wall = f"p50 {statistics.median(ms):8.1f} ms   min {min(ms):8.1f}   max {max(ms):8.1f}"
    print(f"{name:<48} {wall}{cpu}   target {target}")


async def measure(dsn: str, day: str, day_start: datetime, vehicles: list[tuple[str, str]]) -> None:
    from gpsd_server import config
    from gpsd_server.api.auth import ROLES, digest, new_token
    from gpsd_server.app import Server

    tag = uuid.uuid4().hex[:8]
    env = {
        # The deployment's state folder and broker port, as the rest of the tools honour them.
        **{k: os.environ[k] for k in config.SHORTHANDS if k in os.environ},
        "GPSD_DATABASE__DSN": dsn,
        "GPSD_HTTP__PORT": "0",
        "GPSD_MQTT__CLIENT_ID": f"bench-{tag}",
        "GPSD_MQTT__TOPIC_PREFIX": f"bench{tag}",
        "GPSD_MQTT__PERSISTENT_SESSION": "false",
    }
    srv = Server(config.load(None, env))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(srv.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 60)
    token = new_token()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_tokens (name, role, digest) VALUES (%s, 'viewer', %s)", (f"bench-{tag}", digest(token))
        )
    assert "viewer" in ROLES
    base = f"http://127.0.0.1:{srv.http_port}"
    start, end = day_start.isoformat(), (day_start + timedelta(days=1)).isoformat()
    vid = vehicles[0][0]
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:

            async def track() -> None:
                r = await http.get(f"/api/vehicles/{vid}/track", params={"start": start, "end": end})
                assert r.status_code == 200, r.text

            await track()
            r = await http.get(f"/api/vehicles/{vid}/track", params={"start": start, "end": end})
            print(f"one vehicle-day: {len(r.json()['features']) - 1:,} points, {len(r.content) / 1e6:.1f} MB")
            line("track, one vehicle-day, GeoJSON over HTTP", await timed(track, 20), "<= 30 ms")

            async def simplified() -> None:
                r = await http.get(f"/api/vehicles/{vid}/track", params={"start": start, "end": end, "simplify_m": 10})
                assert r.status_code == 200, r.text

            line("track, one vehicle-day, simplify_m=10", await timed(simplified, 10), "-")

            async def mileage() -> None:
                r = await http.get("/api/reports/mileage", params={"day": day})
                assert r.status_code == 200 and len(r.json()["vehicles"]) == len(vehicles), r.text

            line(f"daily mileage report, {len(vehicles)} vehicles", await timed(mileage, 3), "<= 2 s")

            async def coverage() -> None:
                r = await http.get("/api/reports/patrol-coverage", params={"start": start, "end": end})
                assert r.status_code == 200 and len(r.json()["grids"]) == 58, r.text

            patrol = sum(1 for _, c in vehicles if c == "patrol")
            line(f"patrol coverage, 58 grids, {patrol} patrol cars, 1 day", await timed(coverage, 3), "<= 1 s")

        ws_url = base.replace("http://", "ws://") + f"/ws/replay?token={token}"

        async def replay_start() -> None:
            async with websockets.connect(ws_url) as ws:
                msg = {"type": "start", "vehicles": [vid], "start": start, "end": end, "speed": 100}
                t = time.perf_counter()
                await ws.send(json.dumps(msg))
                while json.loads(await ws.recv())["type"] != "replay_position":
                    pass
                latencies.append((time.perf_counter() - t) * 1000)

        latencies: list[float] = []
        await timed(replay_start, 10)
        CPU_MS.clear()
        line("replay start latency (start -> first position)", latencies, "<= 200 ms")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vehicles", type=int, default=1000)
    p.add_argument("--step", type=int, default=10, help="seconds between fixes")
    p.add_argument("--db", default="gpsd_bench")
    p.add_argument("--skip-load", action="store_true", help="reuse the database as loaded by an earlier run")
    p.add_argument("--seed", type=int, default=4)
    args = p.parse_args()
    tz = ZoneInfo("Asia/Shanghai")
    day = datetime.now(tz).date() - timedelta(days=2)
    day_start = datetime.combine(day, dtime(), tz)
    dsn = f"postgresql://postgres@127.0.0.1:{PG_PORT}/{args.db}"
    vehicles = vehicle_ids(args.vehicles)
    if not args.skip_load:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{args.db}"')
        from gpsd_server.store.schema import migrate

        async def prepare() -> None:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await migrate(conn)

        asyncio.run(prepare())
        print(f"loading {len(vehicles)} vehicles x 1 day at {args.step} s into {args.db} (local day {day}) ...")
        began = time.perf_counter()
        n = load(dsn, vehicles, day_start, args.step, args.seed)
        print(f"loaded {n:,} fixes in {time.perf_counter() - began:.1f} s")
        # Loaded around the track writer: build the hourly summary it would have kept.
        from gpsd_server.store.batch import MileageRule, rebuild_hours

        began = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            hours = rebuild_hours(conn, day_start, day_start + timedelta(days=1), MileageRule())
        print(f"mileage summary: {hours:,} vehicle-hours in {time.perf_counter() - began:.1f} s")
    asyncio.run(measure(dsn, day.isoformat(), day_start, vehicles))


if __name__ == "__main__":
    main()
