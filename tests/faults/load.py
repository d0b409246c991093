"""A confirmed publisher and a live listener for fault tests.

The publisher sends one native fix per message at a steady rate with QoS 1
and counts a fix only once the broker acknowledged it (PUBACK). A publish
that fails or times out (broker restarting) is sent again after reconnecting,
until confirmed: the server stores a repeat once, so "every confirmed fix is
stored exactly once" is the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import psycopg
import websockets


@dataclass
class Publisher:
    port: int
    prefix: str
    vehicles: int = 50
    rate: float = 800.0  # messages per second
    t0: float = field(default_factory=lambda: float(int(time.time()) - 3000))
    alarm: dict[str, int] = field(default_factory=dict)  # vehicle -> alarm DWORD for its next fixes
    speed: dict[str, float] = field(default_factory=dict)  # vehicle -> speed_kmh of its next fixes (default 4)
    confirmed: set[tuple[str, float]] = field(default_factory=set)
    failures: int = 0
    reconnects: int = 0
    _seq: int = 0
    _retry: list[tuple[str, bytes, tuple[str, float]]] = field(default_factory=list)

    def vehicle(self, v: int) -> str:
        return f"{self.prefix}-v{v:03d}"

    def _next(self) -> tuple[str, bytes, tuple[str, float]]:
        i = self._seq
        self._seq += 1
        v, n = i % self.vehicles, i // self.vehicles
        vid = self.vehicle(v)
        ts = self.t0 + n  # one fix per second of fix time per vehicle
        body = {"ts": ts, "lon": 112.30 + v * 1e-3, "lat": 28.55 + n * 1e-5, "speed_kmh": self.speed.get(vid, 4.0),
                "heading": 0}  # fmt: skip
        if self.alarm.get(vid):
            body["alarm"] = self.alarm[vid]
        return f"{self.prefix}/{vid}/fix", json.dumps(body).encode(), (vid, ts)

    @property
    def sent(self) -> int:
        return self._seq

    async def run(self, duration: float, stop: asyncio.Event | None = None) -> None:
        """Publish for ``duration`` seconds, then until every fix is confirmed."""
        end = time.monotonic() + duration
        tick = 0.02
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=f"{self.prefix}-pub", max_inflight_messages=2000
                ) as client:
                    next_tick = time.monotonic()
                    while True:
                        now = time.monotonic()
                        producing = now < end and not (stop is not None and stop.is_set())
                        if not producing and not self._retry:
                            return
                        batch, self._retry = self._retry, []
                        if producing:
                            batch += [self._next() for _ in range(int(self.rate * tick))]
                        results = await asyncio.gather(
                            *(client.publish(t, p, qos=1, timeout=5) for t, p, _ in batch), return_exceptions=True
                        )
                        for item, result in zip(batch, results, strict=True):
                            if isinstance(result, BaseException):
                                self._retry.append(item)
                            else:
                                self.confirmed.add(item[2])
                        if len(self._retry) and any(isinstance(r, BaseException) for r in results):
                            self.failures += 1
                            raise aiomqtt.MqttError("publish failed")
                        next_tick += tick
                        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            except aiomqtt.MqttError:
                self.reconnects += 1
                await asyncio.sleep(0.3)


@dataclass
class LiveListener:
    """Collects /ws/live alert messages (with their arrival time) for some vehicles."""

    url: str
    vehicles: list[str]
    alerts: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "vehicles": self.vehicles}))
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "snapshot":
                    self.ready.set()
                elif msg.get("type") == "alert":
                    self.alerts.append((time.monotonic(), msg))


def stored(dsn: str, prefix: str) -> tuple[int, set[tuple[str, float]]]:
    """Rows in ``fixes`` for this test's vehicles, and their distinct (vehicle, ts)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT vehicle_id, extract(epoch FROM ts)::float8 FROM fixes WHERE vehicle_id LIKE %s", (prefix + "-%",)
        ).fetchall()
    return len(rows), {(str(v), float(t)) for v, t in rows}


def alerts_of(dsn: str, vehicle: str, kind: str) -> list[tuple[Any, ...]]:
    """(id, key, ts, ended_ts, details) of a vehicle's alerts of one kind, oldest first."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, key, ts, ended_ts, details FROM alerts WHERE vehicle_id = %s AND kind = %s ORDER BY ts",
            (vehicle, kind),
        ).fetchall()


def tampering_alerts(dsn: str, vehicle: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, kind, key, ts, ended_ts FROM alerts WHERE vehicle_id = %s AND kind = 'tampering'", (vehicle,)
        ).fetchall()


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
