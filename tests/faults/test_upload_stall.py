"""A valid 100,000-vertex polygon uploaded under ingest load (the issue: it
froze the server for 124 s, 200 false offline alerts followed): the upload
succeeds, and meanwhile /healthz and ingest keep their latency and no vehicle
is reported offline. Figures are measured before and during the upload."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import statistics
import time
from datetime import datetime
from typing import Any

import aiomqtt
import httpx
import psycopg
import websockets

from tests.faults.load import Publisher, cancel
from tests.fixtures.services import REPO
from tests.helpers import ws_messages
from tools.procs import ServerProcess

LOAD_S = 14.0
UPLOAD_AT_S = 4.0
VERTICES = 100_000
HEALTH_P99_S = 0.25  # the issue suggests 200 ms; 250 holds on a 2-core machine others load too
INGEST_P99_S = 0.5  # probe fix published -> its position on /ws/live
PROBE_EVERY_S = 0.05


def big_polygon(n: int = VERTICES) -> bytes:
    """A valid (simple, wavy) ring of ``n`` positions around the demo city's centre."""
    ring = []
    for i in range(n - 1):
        a = 2 * math.pi * i / (n - 1)
        r = 0.02 * (1 + 0.05 * math.sin(40 * a))
        ring.append([round(112.93 + r * math.cos(a), 7), round(28.23 + r * math.sin(a), 7)])
    ring.append(ring[0])
    feature = {
        "type": "Feature",
        "properties": {"id": "BIG-1", "name": "dense outline", "kind": "prohibited", "classes": ["muck_truck"]},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    return json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


async def sample_health(http: str, samples: list[tuple[float, float]]) -> None:
    async with httpx.AsyncClient(base_url=http, timeout=30) as client:
        while True:
            t0 = time.monotonic()
            await client.get("/healthz")
            samples.append((t0, time.monotonic() - t0))
            await asyncio.sleep(0.05)


async def probe(port: int, prefix: str, vehicle: str) -> None:
    """One fix every PROBE_EVERY_S stamped with the wall clock, so its position's arrival times ingest."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"{prefix}-probe") as client:
        while True:
            body = {"ts": time.time(), "lon": 112.95, "lat": 28.25, "speed_kmh": 20.0}
            await client.publish(f"{prefix}/{vehicle}/fix", json.dumps(body), qos=1)
            await asyncio.sleep(PROBE_EVERY_S)


async def listen(url: str, vehicle: str, latencies: list[tuple[float, float]], alerts: list[dict[str, Any]]) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        async for raw in ws:
            now = time.time()
            for msg in ws_messages(json.loads(raw)):
                if msg.get("type") == "position" and msg.get("vehicle_id") == vehicle:
                    sent = msg["ts"] if isinstance(msg["ts"], float) else None
                    if sent is None:
                        sent = datetime.fromisoformat(msg["ts"].replace("Z", "+00:00")).timestamp()
                    latencies.append((time.monotonic(), now - sent))
                elif msg.get("type") == "alert":
                    alerts.append(msg)


async def test_dense_upload_under_load_keeps_health_and_ingest_latency(make_server: Any) -> None:
    srv: ServerProcess = make_server({"GPSD_DATABASE__FLUSH_INTERVAL_MS": "5"})
    shutil.rmtree(srv.workdir / "geofences")
    shutil.copytree(REPO / "geofences", srv.workdir / "geofences")  # the demo city, dense as it is
    srv.start()
    body = big_polygon()
    probe_vehicle = f"{srv.prefix}-probe"
    pub = Publisher(srv.svc.mqtt_port, srv.prefix, vehicles=100, rate=1000)
    health: list[tuple[float, float]] = []
    ingest: list[tuple[float, float]] = []
    live_alerts: list[dict[str, Any]] = []
    tasks = [
        asyncio.create_task(sample_health(srv.http, health)),
        asyncio.create_task(listen(srv.ws_url(), probe_vehicle, ingest, live_alerts)),
    ]
    await asyncio.sleep(0.5)
    tasks.append(asyncio.create_task(probe(srv.svc.mqtt_port, srv.prefix, probe_vehicle)))
    publishing = asyncio.create_task(pub.run(LOAD_S))
    try:
        await asyncio.sleep(UPLOAD_AT_S)
        async with httpx.AsyncClient(base_url=srv.http, headers={"Authorization": f"Bearer {srv.tokens['admin']}"},
                                     timeout=120) as http:  # fmt: skip
            up0 = time.monotonic()
            r = await http.put("/api/geofences/files/dense.geojson", content=body)
            up1 = time.monotonic()
        assert r.status_code == 200, r.text[:500]
        assert "dense.geojson" in r.json()["files"]
        await publishing
        await asyncio.sleep(1.0)
    finally:
        await cancel(publishing)
        for t in tasks:
            await cancel(t)

    def window(samples: list[tuple[float, float]], a: float, b: float) -> list[float]:
        return [v for t, v in samples if a <= t <= b]

    before_h, during_h = window(health, 0, up0), window(health, up0, up1 + 1.0)
    before_i, during_i = window(ingest, 0, up0), window(ingest, up0, up1 + 1.0)
    assert before_h and during_h and before_i and during_i, (len(health), len(ingest))
    offline = [a for a in live_alerts if a["kind"] == "offline"]
    with psycopg.connect(srv.dsn) as conn:
        stored_offline = conn.execute("SELECT count(*) FROM alerts WHERE kind = 'offline'").fetchone()
    print(
        f"\n[upload stall] {VERTICES}-vertex polygon ({len(body) / 1e6:.1f} MB) accepted in {up1 - up0:.2f} s "
        f"under {pub.rate:.0f} fixes/s; /healthz p50/p99 before {statistics.median(before_h) * 1e3:.1f}/"
        f"{p99(before_h) * 1e3:.1f} ms, during {statistics.median(during_h) * 1e3:.1f}/{p99(during_h) * 1e3:.1f} ms "
        f"(max {max(during_h) * 1e3:.0f}); ingest (probe fix -> /ws/live) p50/p99 before "
        f"{statistics.median(before_i) * 1e3:.1f}/{p99(before_i) * 1e3:.1f} ms, during "
        f"{statistics.median(during_i) * 1e3:.1f}/{p99(during_i) * 1e3:.1f} ms (max {max(during_i) * 1e3:.0f}); "
        f"offline alerts {len(offline)} live, {stored_offline[0] if stored_offline else '?'} stored"
    )
    assert p99(during_h) < HEALTH_P99_S, f"/healthz p99 during the upload {p99(during_h) * 1e3:.0f} ms"
    assert p99(during_i) < INGEST_P99_S, f"ingest p99 during the upload {p99(during_i) * 1e3:.0f} ms"
    assert not offline and stored_offline == (0,)
    assert srv.stop(timeout=30) == 0
