"""The server started while PostgreSQL is down: HTTP answers at once
(/healthz 503 naming the database, routes that need it 503 without waiting),
ingest runs and spools, the live map is fed from memory for tokens known
before, and when the database answers the schema is created before anything
is written, state is restored and every confirmed fix is stored once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from tests.faults.load import Publisher, alerts_of, cancel, stored, wait_until
from tests.fixtures.server import make_tokens
from tests.helpers import ws_messages
from tools.procs import ServerProcess

FAST_S = 1.0  # "at once": what a request may take while the database is away


def spooled_bytes(srv: ServerProcess) -> int:
    return sum(p.stat().st_size for p in (srv.workdir / ".state" / "spool").glob("*.spool"))


async def timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = await client.request(method, url, **kw)
    return r, time.monotonic() - t0


async def test_fresh_database_down_at_start(make_server: Any) -> None:
    srv: ServerProcess = make_server()
    svc = srv.svc
    await asyncio.to_thread(svc.pg_stop)
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(srv.start, 30, wait_database=False)
        started_s = time.monotonic() - t0
        async with httpx.AsyncClient(base_url=srv.http, timeout=10) as http:
            r, took = await timed(http, "GET", "/healthz")
            assert r.status_code == 503 and took < FAST_S
            body = r.json()
            assert body["database"] is False and any(p.startswith("database") for p in body["problems"]), body
            r, took = await timed(http, "GET", "/api/vehicles", headers={"Authorization": "Bearer gpsd_unknown"})
            assert r.status_code == 503 and took < FAST_S, (r.status_code, took)
            assert "database" in r.json()["error"]
        async with websockets.connect(f"ws://127.0.0.1:{srv.http_port}/ws/live?token=gpsd_unknown") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 1013  # try again later
        pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=20, rate=300)
        await pub.run(5.0)
        await wait_until(lambda: spooled_bytes(srv) > 0, 10, "fixes spooled")
        spool = spooled_bytes(srv)
        assert "database unavailable at start" in srv.log_text()
    finally:
        await asyncio.to_thread(svc.pg_start)
    up = time.monotonic()
    await wait_until(lambda: (srv.health() or {}).get("database") is True, 30, "database ready")
    ready_s = time.monotonic() - up
    await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 60, "spooled fixes stored")
    rows, keys = stored(srv.dsn, srv.prefix)
    assert pub.confirmed <= keys and rows == len(keys) == len(pub.confirmed)
    log = srv.log_text()
    # the schema came first: nothing was written into a database without it
    assert log.index("applied migration 001") < log.index("spool replayed")
    srv.tokens = make_tokens(srv.dsn, srv.tag)
    m = srv.metrics()
    assert m["gpsd_db_available"] == 1 and m["gpsd_spool_replayed_rows_total"] >= len(pub.confirmed)
    print(
        f"\n[start without database, fresh] serving in {started_s:.1f} s with PostgreSQL down; "
        f"/healthz and a database route answered 503 in < {FAST_S:.0f} s; {len(pub.confirmed)} fixes spooled "
        f"({spool / 1e3:.0f} kB); ready {ready_s:.1f} s after PostgreSQL started; all stored once"
    )
    assert srv.stop(timeout=30) == 0


async def live_positions(url: str, wanted: set[str], seen: dict[str, float], ready: asyncio.Event) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        async for raw in ws:
            for msg in ws_messages(json.loads(raw)):
                if msg.get("type") == "snapshot":
                    ready.set()
                elif msg.get("type") == "position" and msg["vehicle_id"] in wanted:
                    seen.setdefault(msg["vehicle_id"], time.monotonic())


async def test_restart_while_database_is_down_serves_known_tokens(server_process: ServerProcess) -> None:
    srv, svc = server_process, server_process.svc
    srv.start()
    viewer = {"Authorization": f"Bearer {srv.tokens['viewer']}"}
    async with httpx.AsyncClient(base_url=srv.http, timeout=10) as http:
        assert (await http.get("/api/me", headers=viewer)).status_code == 200  # known to the server now
    pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=10, rate=200)
    # during the outage only z, x and w report
    z, x, w, y = pub.vehicle(0), pub.vehicle(1), pub.vehicle(2), pub.vehicle(5)
    pub.alarm[x] = pub.alarm[w] = pub.alarm[y] = 1  # SOS, open across the restart
    await pub.run(3.0)
    # everything delivered is stored (and acknowledged): nothing is redelivered after the restart
    await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 30, "fixes stored")
    await wait_until(lambda: len(alerts_of(srv.dsn, y, "sos")) == 1, 20, "sos alerts stored")
    assert srv.stop(timeout=30) == 0
    await asyncio.to_thread(svc.pg_stop)
    try:
        await asyncio.to_thread(srv.start, 30, wait_database=False)
        async with httpx.AsyncClient(base_url=srv.http, timeout=10) as http:
            r, took_health = await timed(http, "GET", "/healthz")
            assert r.status_code == 503 and "database" in r.json()["problems"][0] and took_health < FAST_S
            r, took_me = await timed(http, "GET", "/api/me", headers=viewer)
            assert r.status_code == 200 and took_me < FAST_S  # the token cache survived the restart
            r, took_map = await timed(http, "GET", "/api/map", headers=viewer)
            assert r.status_code == 200 and took_map < FAST_S  # needs no database
            r, took_db = await timed(http, "GET", "/api/vehicles", headers=viewer)
            assert r.status_code == 503 and took_db < FAST_S
        seen: dict[str, float] = {}
        ready = asyncio.Event()
        listening = asyncio.create_task(live_positions(srv.ws_url(), {x, z}, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        # y stays silent during the outage: restored when the database answers
        outage = Publisher(svc.mqtt_port, srv.prefix, vehicles=3, rate=100, t0=pub.t0 + 400)
        outage.alarm[x] = 1  # x reports during the outage with its alarm still set
        outage_task = asyncio.create_task(outage.run(4.0))
        await wait_until(lambda: {x, z} <= set(seen), 10, "live positions while the database is down")
        await outage_task
        assert spooled_bytes(srv) > 0
    finally:
        await asyncio.to_thread(svc.pg_start)
    await wait_until(lambda: (srv.health() or {}).get("database") is True, 30, "database ready")
    # y comes back with its alarm cleared: its restored alert ends
    after = Publisher(svc.mqtt_port, srv.prefix, vehicles=6, rate=100, t0=outage.t0 + 400)
    after.alarm[x] = 1
    await after.run(2.0)
    confirmed = pub.confirmed | outage.confirmed | after.confirmed
    await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(confirmed), 60, "every fix stored")
    await asyncio.sleep(1.0)
    await cancel(listening)
    rows, keys = stored(srv.dsn, srv.prefix)
    assert confirmed <= keys and rows == len(keys) == len(confirmed)
    x_sos, y_sos = alerts_of(srv.dsn, x, "sos"), alerts_of(srv.dsn, y, "sos")
    # x kept its alarm set through the outage: one alert, still open (the live one went on under its id)
    assert len(x_sos) == 1 and x_sos[0][3] is None, x_sos
    # z had none; w's alarm cleared during the outage: its alert of before ended when the database answered
    w_sos = alerts_of(srv.dsn, w, "sos")
    assert len(w_sos) == 1 and w_sos[0][3] is not None and w_sos[0][4].get("after_outage"), w_sos
    # y: restored (not raised again), ended by its first fix with the bit clear
    assert len(y_sos) == 1 and y_sos[0][3] is not None and not y_sos[0][4].get("after_outage"), y_sos
    print(
        f"\n[restart without database, known tokens] /healthz {took_health * 1e3:.0f} ms, /api/me (cache) "
        f"{took_me * 1e3:.0f} ms, /api/map {took_map * 1e3:.0f} ms, /api/vehicles 503 in {took_db * 1e3:.0f} ms; "
        f"live positions from memory; {len(confirmed)} fixes stored once; open alerts of before: kept where the "
        f"alarm held, ended where it cleared during the outage, restored for a silent vehicle"
    )
    assert srv.stop(timeout=30) == 0
