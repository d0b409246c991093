"""Replay over /ws/replay: a scenario recorded through the real broker is played
at 50x with its alert in order, then paused, sped up and seeked."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import websockets

from gpsd_server.wire import ts_text
from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for

POWER_CUT = 1 << 8
STEP_S = 3
N = 40


async def record_scenario(server: RunningServer, db: psycopg.Connection[Any], vid: str) -> float:
    """40 fixes 3 s apart heading east, outside every zone; main power cut from fix 10 to fix 19."""
    t0 = float(int(time.time()) - 300)
    topic = f"{server.prefix}/{vid}/fix"
    messages = []
    for i in range(N):
        alarm = POWER_CUT if 10 <= i < 20 else 0
        body = {"ts": t0 + i * STEP_S, "lon": 111.90 + i * 0.0003, "lat": 28.30, "speed_kmh": 36, "alarm": alarm}
        messages.append((topic, json.dumps(body).encode()))
    for m in messages:  # one at a time: per-vehicle order through the pipeline
        await publish([m])

    def stored() -> tuple[Any, ...] | None:
        return db.execute(
            "SELECT (SELECT count(*) FROM fixes WHERE vehicle_id = %s),"
            " (SELECT count(*) FROM alerts WHERE vehicle_id = %s AND ended_ts IS NOT NULL)",
            (vid, vid),
        ).fetchone()

    await wait_for(lambda: stored() == (N, 1), what="the scenario's fixes and its ended alert")
    return t0


def iso(ts: float) -> str:
    """The server's one time format (RFC 3339, UTC, Z)."""
    return ts_text(datetime.fromtimestamp(ts, UTC))


async def messages_until(ws: websockets.ClientConnection, kind: str, timeout: float = 15) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            out.append(json.loads(await ws.recv()))
            if out[-1]["type"] == kind:
                return out


async def test_replay_at_50x_in_order_then_speed_and_seek(server: RunningServer, db: psycopg.Connection[Any]) -> None:
    vid = f"{server.prefix}-rp"
    t0 = await record_scenario(server, db, vid)
    start = {"type": "start", "vehicles": [vid], "start": iso(t0 - 1), "end": iso(t0 + N * STEP_S), "speed": 50}

    async with websockets.connect(server.ws_url("/ws/replay")) as ws:
        # A bad start is answered with the parameter named, and the client may try again.
        await ws.send(json.dumps({**start, "vehicles": ["nobody-here"]}))
        assert json.loads(await ws.recv()) == {"type": "error", "error": "unknown vehicle 'nobody-here'",
                                               "parameter": "vehicles"}  # fmt: skip
        await ws.send(json.dumps({**start, "vehicles": ["a\x00b"]}))  # it reached the database and closed the socket
        assert json.loads(await ws.recv())["parameter"] == "vehicles"
        await ws.send(json.dumps({**start, "speed": 500}))
        assert json.loads(await ws.recv())["parameter"] == "speed"

        began = time.monotonic()
        await ws.send(json.dumps(start))
        got = await messages_until(ws, "replay_end")
        elapsed = time.monotonic() - began
    info = got[0]
    assert info["type"] == "replay_info" and info["vehicles"] == [vid]
    assert [a["kind"] for a in info["alerts"]] == ["tampering"]
    played = [m for m in got if m["type"] in ("replay_position", "replay_alert")]
    kinds = [m["type"] for m in played]
    assert kinds.count("replay_position") == N and kinds.count("replay_alert") == 1
    assert kinds.index("replay_alert") == 10  # the alert comes just before the fix that raised it
    stamps = [datetime.fromisoformat(m["ts"]) for m in played]
    assert stamps == sorted(stamps)
    assert played[10]["id"] == info["alerts"][0]["id"] and played[10]["details"]["alarm"] == "main_power_cut"
    assert 1.5 < elapsed < 6  # 118 s of fixes at 50x is 2.4 s
    stats = got[-1]["stats"]
    assert stats["max_speed_kmh"] == 36 and stats["stops"] == 0
    assert abs(stats["distance_km"] - 39 * 0.0003 * 97.8) < 0.1 and stats["driving_s"] == 39 * STEP_S

    async with websockets.connect(server.ws_url("/ws/replay")) as ws:
        await ws.send(json.dumps({**start, "speed": 20}))
        first = await messages_until(ws, "replay_position")
        assert first[0]["type"] == "replay_info"
        await ws.send(json.dumps({"type": "pause"}))
        await asyncio.sleep(0.3)
        while True:  # drain what was in flight, then nothing comes while paused
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                break
            assert msg["type"] in ("replay_position", "replay_clock")
        await ws.send(json.dumps({"type": "speed", "speed": 100}))
        seek_ts = t0 + 60
        await ws.send(json.dumps({"type": "seek", "ts": iso(seek_ts)}))
        await ws.send(json.dumps({"type": "resume"}))
        rest = await messages_until(ws, "replay_end")
    clock = next(i for i, m in enumerate(rest) if m["type"] == "replay_clock" and m["ts"] == iso(seek_ts))
    after = [m for m in rest[clock:] if m["type"] == "replay_position"]
    assert [datetime.fromisoformat(m["ts"]).timestamp() for m in after] == [
        t0 + i * STEP_S for i in range(20, N)
    ]  # from the seek point on, and nothing before it
    assert not any(m["type"] == "replay_alert" for m in rest[clock:])  # the alert lies before the seek point
