"""Slow and excess HTTP connections: 100 slowloris senders and 20 silent ones
are answered 408 and closed once their headers are late, connections past
``[http] limit_concurrency`` are answered 503 at once, both are counted and
logged once per interval, and /healthz keeps answering quickly meanwhile."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import urllib.request

import httpx

from tools.procs import ServerProcess

HEADER_TIMEOUT_S = 2.0
SLOW = 100
SILENT = 20
CLOSED_WITHIN_S = HEADER_TIMEOUT_S + 2.0  # the deadline plus a loaded 2-core machine's slack
HEALTH_P99_S = 0.25


def labelled(srv: ServerProcess, name: str, label: str) -> float:
    req = urllib.request.Request(f"{srv.http}/metrics", headers={"Authorization": f"Bearer {srv.tokens['viewer']}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}\{{reason="{label}"\}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def hold(port: int, trickle: bool) -> tuple[float, bytes]:
    """A connection that sends its headers a byte per 0.5 s (or nothing at
    all): seconds until the server closed it, and what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()
    if trickle:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    async def drip() -> None:
        while trickle:
            await asyncio.sleep(0.5)
            writer.write(b"X")  # a header that never ends
            await writer.drain()

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(reader.read(), 30)  # until EOF
    finally:
        dripping.cancel()
        writer.close()
    return time.monotonic() - opened, answer


async def health_latencies(http: str, stop: asyncio.Event) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=http, timeout=10) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = await client.get("/healthz")
            out.append(time.perf_counter() - t0)
            assert r.status_code in (200, 503)
            await asyncio.sleep(0.05)
    return out


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


async def test_slow_senders_are_closed_within_the_header_timeout(make_server: object) -> None:
    srv: ServerProcess = make_server(  # type: ignore[operator]
        {"GPSD_HTTP__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "GPSD_HTTP__LIMIT_CONCURRENCY": "200"}
    )
    srv.start()
    stop = asyncio.Event()
    probing = asyncio.create_task(health_latencies(srv.http, stop))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    held = await asyncio.gather(
        *(hold(srv.http_port, trickle=True) for _ in range(SLOW)),
        *(hold(srv.http_port, trickle=False) for _ in range(SILENT)),
    )
    all_closed_s = time.monotonic() - started
    stop.set()
    latencies = await probing

    closed_after = [s for s, _ in held]
    assert max(closed_after) < CLOSED_WITHIN_S, sorted(closed_after)[-5:]
    assert min(closed_after) >= HEADER_TIMEOUT_S * 0.9
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in held)
    assert labelled(srv, "gpsd_http_refused_total", "header_timeout") >= SLOW + SILENT
    # refusals are logged once per interval, not once each
    assert 1 <= srv.log_text().count("HTTP: closed connections") <= 3
    assert p99(latencies) < HEALTH_P99_S, f"/healthz p99 {p99(latencies) * 1000:.0f} ms"
    print(
        f"\n[slowloris] {SLOW} slow + {SILENT} silent connections closed after "
        f"{min(closed_after):.2f}-{max(closed_after):.2f} s (header timeout {HEADER_TIMEOUT_S} s), all within "
        f"{all_closed_s:.1f} s; /healthz meanwhile p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99(latencies) * 1000:.1f} ms over {len(latencies)} requests"
    )
    assert srv.stop(timeout=30) == 0


async def test_connections_past_the_limit_are_refused_at_once(make_server: object) -> None:
    limit = 40
    srv: ServerProcess = make_server(  # type: ignore[operator]
        {"GPSD_HTTP__HEADER_TIMEOUT_S": "3", "GPSD_HTTP__LIMIT_CONCURRENCY": str(limit)}
    )
    srv.start()
    conns = [await asyncio.open_connection("127.0.0.1", srv.http_port) for _ in range(limit + 20)]
    t0 = time.monotonic()
    answers = await asyncio.gather(*(asyncio.wait_for(r.read(), 10) for r, _ in conns))
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    took = time.monotonic() - t0
    for _, w in conns:
        w.close()
    # the first `limit` were admitted (and closed at their header deadline), the rest refused at once
    assert len(refused) == 20 and len(timed_out) == limit, (len(refused), len(timed_out))
    assert b"too many connections" in refused[0] and b"retry-after" in refused[0].lower()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=srv.http) as client:
        assert (await client.get("/healthz")).status_code == 200  # serving again
    assert labelled(srv, "gpsd_http_refused_total", "limit_concurrency") == 20
    print(f"\n[connection limit] {limit} admitted, 20 refused with 503 at once; all answered within {took:.1f} s")
    assert srv.stop(timeout=30) == 0


async def test_a_slow_second_request_on_a_kept_alive_connection_is_closed(make_server: object) -> None:
    srv: ServerProcess = make_server({"GPSD_HTTP__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)})  # type: ignore[operator]
    srv.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"}"), 5)  # the JSON body ends the response
    assert first.startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    answer = b""
    while time.monotonic() - t0 < 30:  # a byte every 0.5 s keeps uvicorn's keep-alive clock from ever firing
        try:
            writer.write(b"X")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 0.5)
            break
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):  # our byte hit the closed connection
            answer = b"reset"
            break
    closed_after = time.monotonic() - t0
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"reset", answer[:40]
    assert HEADER_TIMEOUT_S * 0.9 <= closed_after < CLOSED_WITHIN_S, closed_after
    print(f"\n[slowloris, kept-alive] the second request's headers late: 408 and closed after {closed_after:.2f} s")
    assert srv.stop(timeout=30) == 0
