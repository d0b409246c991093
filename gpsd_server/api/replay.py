"""Replay over ``/ws/replay``: stored fixes and alerts of some vehicles,
played in fix-time order at 1x-100x with pause, resume, seek and speed change.

Protocol (JSON text messages):

- client: ``{"type": "start", "vehicles": [ids], "start": RFC 3339, "end": RFC 3339, "speed": 1..100}``,
  then any of ``{"type": "pause"}``, ``{"type": "resume"}``, ``{"type": "seek", "ts": RFC 3339}``,
  ``{"type": "speed", "speed": n}``.
- server: ``replay_info`` (range, vehicles, the alerts on the way), then
  ``replay_position`` and ``replay_alert`` in fix-time order, ``replay_clock``
  about every ``replay_clock_s`` of wall time, finally ``replay_end`` with
  statistics; ``{"type": "error", "error", "parameter"}`` for a bad message.

Memory stays bounded whatever the client does: fixes are read one keyset
page at a time (the pool connection is returned between pages), and each
send waits for the socket to drain, so a slow reader slows the replay
instead of growing a queue. Gaps with no fix that would last more than
``MAX_IDLE_S`` of wall time are skipped.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gpsd_server import alerts as view
from gpsd_server import wire
from gpsd_server.api.auth import Principal, websocket_principal
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import BadParameter, parse_time
from gpsd_server.core import history as core
from gpsd_server.core.city import MAX_ID_CHARS
from gpsd_server.settings import HistorySettings
from gpsd_server.store import alerts as alert_store
from gpsd_server.store import history as store
from gpsd_server.store.alerts import AlertRecord
from gpsd_server.store.db import DatabaseUnavailable
from gpsd_server.store.vehicles import known_vehicles

MAX_IDLE_S = 10.0
START_TIMEOUT_S = 60.0
MAX_MESSAGE = 16 * 1024


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    vehicles: tuple[str, ...]
    start: datetime
    end: datetime
    speed: float


def _speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 100:
        raise BadParameter("speed", "a number from 1 to 100")
    return float(value)


def parse_request(msg: dict[str, Any], settings: HistorySettings) -> ReplayRequest:
    vehicles = msg.get("vehicles")
    if not isinstance(vehicles, list) or not vehicles or not all(isinstance(v, str) and v for v in vehicles):
        raise BadParameter("vehicles", "a non-empty list of vehicle ids")
    if any(len(v) > MAX_ID_CHARS or "\x00" in v for v in vehicles):  # a NUL reached the database, closed the socket
        raise BadParameter("vehicles", f"a vehicle id has at most {MAX_ID_CHARS} characters and no NUL")
    if len(vehicles) > settings.replay_max_vehicles:
        raise BadParameter("vehicles", f"at most {settings.replay_max_vehicles} vehicles")
    start = parse_time("start", _text(msg, "start"))
    end = parse_time("end", _text(msg, "end"))
    if start >= end:
        raise BadParameter("start", "must be before end")
    if end - start > timedelta(days=settings.replay_max_range_days):
        raise BadParameter("end", f"range longer than the cap of {settings.replay_max_range_days:g} days")
    return ReplayRequest(tuple(dict.fromkeys(vehicles)), start, end, _speed(msg.get("speed", 1)))


def _text(msg: dict[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is not None and not isinstance(value, str | int | float):
        raise BadParameter(key, "an RFC 3339 time")
    return None if value is None else str(value)


class Clock:
    """Replay time as a function of wall time: ts = anchor + (wall - wall0) * speed."""

    def __init__(self, ts: float, speed: float, wall: float) -> None:
        self.anchor, self.wall0, self.speed, self.paused = ts, wall, speed, False

    def now(self, wall: float) -> float:
        return self.anchor if self.paused else self.anchor + (wall - self.wall0) * self.speed

    def set(
        self, *, wall: float, ts: float | None = None, speed: float | None = None, paused: bool | None = None
    ) -> None:
        self.anchor = self.now(wall) if ts is None else ts
        self.wall0 = wall
        self.speed = self.speed if speed is None else speed
        self.paused = self.paused if paused is None else paused

    def wait_s(self, ts: float, wall: float) -> float | None:
        """Wall seconds until replay time reaches ``ts``; None while paused."""
        return None if self.paused else max(0.0, (ts - self.now(wall)) / self.speed)


class Player:
    def __init__(
        self,
        services: ApiServices,
        ws: WebSocket,
        req: ReplayRequest,
        alerts: list[AlertRecord],
    ) -> None:
        self.services, self.ws, self.req = services, ws, req
        self.settings = services.config.history
        self.alerts = alerts
        self.alert_ts = [a.ts.timestamp() for a in alerts]
        self.clock = Clock(req.start.timestamp(), req.speed, time.monotonic())
        self.changed = asyncio.Event()
        self.seek_to: float | None = None
        self._reset(req.start.timestamp())

    def _reset(self, ts: float) -> None:
        self.page: deque[store.ReplayRow] = deque()
        self.after: tuple[datetime, str] | None = None
        self.lower = datetime.fromtimestamp(ts, self.req.start.tzinfo)
        self.exhausted = False
        self.next_alert = bisect.bisect_left(self.alert_ts, ts)

    # -- control, from the receiving task --------------------------------------------

    def control(self, msg: dict[str, Any]) -> None:
        kind, wall = msg.get("type"), time.monotonic()
        if kind == "pause":
            self.clock.set(wall=wall, paused=True)
        elif kind == "resume":
            self.clock.set(wall=wall, paused=False)
        elif kind == "speed":
            self.clock.set(wall=wall, speed=_speed(msg.get("speed")))
        elif kind == "seek":
            ts = parse_time("ts", _text(msg, "ts")).timestamp()
            if not self.req.start.timestamp() <= ts < self.req.end.timestamp():
                raise BadParameter("ts", "must be within the replay range")
            self.seek_to = ts
            self.clock.set(wall=wall, ts=ts)
        else:
            raise BadParameter("type", "one of pause, resume, seek, speed")
        self.changed.set()

    # -- playing ---------------------------------------------------------------------------

    async def _fill(self) -> None:
        if self.page or self.exhausted:
            return
        async with self.services.db.connection() as conn:
            rows = await store.replay_page(
                conn, self.req.vehicles, self.after, self.lower, self.req.end, self.settings.replay_page_rows
            )
        self.page.extend(rows)
        self.exhausted = len(rows) < self.settings.replay_page_rows
        if rows:
            self.after = (rows[-1][1], rows[-1][0])

    def _next_ts(self) -> tuple[float, bool] | None:
        """Fix time of the next message, and whether it is an alert."""
        fix = self.page[0][1].timestamp() if self.page else None
        alert = self.alert_ts[self.next_alert] if self.next_alert < len(self.alerts) else None
        if fix is None and alert is None:
            return None
        if fix is None or (alert is not None and alert <= fix):
            return alert, True  # type: ignore[return-value]
        return fix, False

    async def _wait_until(self, ts: float) -> bool:
        """Sleep until replay time reaches ts; False when a seek or a speed
        change interrupted the wait and the next message must be chosen again."""
        last_clock = time.monotonic()
        while True:
            self.changed.clear()  # before reading the clock, so no control message is missed
            wall = time.monotonic()
            wait = self.clock.wait_s(ts, wall)
            if wait is not None and wait > MAX_IDLE_S:  # nothing to see: skip to just before it
                self.clock.set(wall=wall, ts=ts - self.clock.speed)
                wait = 1.0
            if wait == 0.0:
                return True
            if wall - last_clock >= self.settings.replay_clock_s:
                await self._send(wire.ReplayClock(ts=wire.utc(self.clock.now(wall))))
                last_clock = wall
            timeout = self.settings.replay_clock_s if wait is None else min(wait, self.settings.replay_clock_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.changed.wait()
            if self.seek_to is not None:
                return False

    async def play(self) -> None:
        while True:
            if self.seek_to is not None:
                self._reset(self.seek_to)
                self.seek_to = None
                await self._send(wire.ReplayClock(ts=wire.utc(self.clock.now(time.monotonic()))))
            await self._fill()
            nxt = self._next_ts()
            if nxt is None:
                break
            if not await self._wait_until(nxt[0]):
                continue
            if nxt[1]:
                await self._send(self._alert(self.alerts[self.next_alert]))
                self.next_alert += 1
            else:
                await self._send(self._position(self.page.popleft()))
        await self._send(wire.ReplayEnd(stats=await self.stats()))

    async def _send(self, msg: wire.Message) -> None:
        await self.ws.send_text(wire.encode(msg).decode())

    def _position(self, row: store.ReplayRow) -> wire.ReplayPosition:
        vehicle_id, ts, lon, lat, speed, heading = row
        info = self.services.directory.info(vehicle_id)
        return wire.ReplayPosition(
            vehicle_id=vehicle_id, ts=ts, lon=lon, lat=lat, speed=speed, heading=heading,
            plate=info.plate, vehicle_class=info.vehicle_class,
        )  # fmt: skip

    def _alert(self, a: AlertRecord) -> wire.ReplayAlert:
        return view.from_record(a, self.services.directory, wire.ReplayAlert)

    async def stats(self) -> dict[str, Any]:
        s = self.settings
        moving_kmh = self.services.config.rules.moving_kmh
        async with self.services.db.connection() as conn:
            tracks = await store.fetch_tracks(conn, self.req.vehicles, self.req.start, self.req.end)
        projection = self.services.city.shapes().projection
        per: dict[str, Any] = {}
        for vehicle_id, t in tracks.items():
            x, y = projection.to_xy(t.lon, t.lat)
            stops = core.find_stops(t.ts, x, y, t.lon, t.lat, radius_m=s.stop_radius_m, min_s=s.stop_min_s)
            stats = core.track_stats(t.ts, t.lon, t.lat, t.speed, moving_kmh=moving_kmh, gap_s=s.gap_s)
            per[vehicle_id] = {**stats.json(), "stops": len(stops)}
        return {
            "distance_km": round(sum(v["distance_km"] for v in per.values()), 3),
            "driving_s": round(sum(v["driving_s"] for v in per.values()), 1),
            "stops": sum(v["stops"] for v in per.values()),
            "max_speed_kmh": max((v["max_speed_kmh"] for v in per.values()), default=0.0),
            "vehicles": per,
        }


async def _error(ws: WebSocket, exc: BadParameter) -> None:
    detail = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
    error = wire.Error(error=str(detail.get("error", "")), parameter=detail.get("parameter"))
    await ws.send_text(wire.encode(error).decode())


async def _receive(ws: WebSocket) -> dict[str, Any]:
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise BadParameter("message", "binary messages are not supported")
    if len(text) > MAX_MESSAGE:
        raise BadParameter("message", "too large")
    try:
        msg = wire.decode(text)
    except (msgspec.DecodeError, RecursionError):
        raise BadParameter("message", "not JSON") from None
    if not isinstance(msg, dict):
        raise BadParameter("message", "a JSON object with a type")
    return msg


async def _start(services: ApiServices, ws: WebSocket, who: Principal) -> Player:
    """Wait for a valid start message (errors are answered and the client may retry).
    A vehicle the account may not see is as unknown as one that does not exist."""
    while True:
        try:
            msg = await _receive(ws)
            if msg.get("type") != "start":
                raise BadParameter("type", "the first message must be start")
            settings = services.config.history
            req = parse_request(msg, settings)
            async with services.db.connection() as conn:
                known = await known_vehicles(conn, req.vehicles)
                unknown = [v for v in req.vehicles if v not in known or not who.sees(v)]
                if unknown:
                    raise BadParameter("vehicles", f"unknown vehicle {unknown[0]!r}", status=404)
                alerts = await alert_store.between(conn, req.vehicles, req.start, req.end, settings.replay_max_alerts)
            return Player(services, ws, req, alerts)
        except BadParameter as exc:
            await _error(ws, exc)


async def session(services: ApiServices, ws: WebSocket) -> None:
    who = await websocket_principal(ws, "viewer", company="own")
    if who is None:
        return
    await ws.accept()
    try:
        await _play(services, ws, who)
    except DatabaseUnavailable as exc:  # replay reads the store: try again later
        with contextlib.suppress(Exception):
            await ws.send_text(wire.encode(wire.Error(error=f"database {exc.reason}")).decode())
            await ws.close(code=1013, reason="database unavailable")


async def _play(services: ApiServices, ws: WebSocket, who: Principal) -> None:
    with contextlib.suppress(WebSocketDisconnect, TimeoutError):
        async with asyncio.timeout(START_TIMEOUT_S):
            player = await _start(services, ws, who)
        req = player.req
        info = wire.ReplayInfo(
            start=req.start, end=req.end, speed=req.speed, vehicles=list(req.vehicles),
            alerts=[wire.TimelineAlert(id=str(a.id), ts=a.ts, kind=a.kind, vehicle_id=a.vehicle_id,
                                       severity=a.severity) for a in player.alerts],
        )  # fmt: skip
        await ws.send_text(wire.encode(info).decode())
        playing = asyncio.create_task(player.play(), name="replay")
        try:
            while not playing.done():
                receiving = asyncio.create_task(_receive(ws))
                await asyncio.wait([receiving, playing], return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
                    break
                try:
                    player.control(receiving.result())
                except BadParameter as exc:
                    await _error(ws, exc)
            await playing
        finally:
            playing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await playing
    with contextlib.suppress(Exception):
        await ws.close()


def router(services: ApiServices) -> APIRouter:
    r = APIRouter()

    @r.websocket("/ws/replay")
    async def ws_replay(ws: WebSocket) -> None:
        await session(services, ws)

    return r
