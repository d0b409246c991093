"""Alerts that stand as evidence, end to end through the broker, the server and
the database (issue 12): a place in the city's words, a short number per day,
where it ended, details never overwritten, and an SOS without a fix."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for

GRID_01 = (112.3660, 28.5905)  # inside 第1网格 of the demo city, away from every site


async def alerts_of(server: RunningServer, vehicle_id: str, kind: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        r = await http.get("/api/alerts", params={"vehicle_id": vehicle_id, "kind": kind, "state": "all"})
    return list(r.json()["alerts"])


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fix(ts: float, lon: float, lat: float, **more: Any) -> bytes:
    return json.dumps({"ts": ts, "lon": lon, "lat": lat, **more}).encode()


async def test_an_sos_without_a_fix_is_raised_where_the_vehicle_was_and_stores_no_track_point(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    vid, now = "PC-001", time.time()
    topic = f"{server.prefix}/{vid}/fix"
    lon, lat = GRID_01
    await publish([(topic, fix(now - 30, lon, lat, speed_kmh=20.0))])
    await wait_for(lambda: vid in server.server.hub.positions, what="the last known position")
    tunnel = json.dumps({"ts": now - 10, "lon": 0, "lat": 0, "alarm": 1}).encode()  # SOS, no GNSS fix
    await publish([(topic, tunnel)])
    await wait_for(lambda: server.server.pipeline.fixes_nofix >= 1, what="the no-fix message")
    await asyncio.sleep(0.3)
    [sos] = [a for a in await alerts_of(server, vid, "sos") if abs(stamp(a["ts"]) - (now - 10)) < 0.01]
    assert (sos["lon"], sos["lat"]) == (lon, lat) and sos["details"]["position"] == "last_known"
    rows = db.execute(
        "SELECT count(*) FROM fixes WHERE vehicle_id = %s AND ts >= to_timestamp(%s)", (vid, now - 31)
    ).fetchone()
    assert rows == (1,)  # the no-fix message is no track point


async def test_an_alert_has_a_number_a_place_an_end_position_and_keeps_its_start_details(
    server: RunningServer,
) -> None:
    vid, now = "MX-001", time.time()
    topic = f"{server.prefix}/{vid}/fix"
    lon, lat = GRID_01
    await publish(
        [
            (topic, fix(now - 40, lon, lat, speed_kmh=0.0, sensors={"drum": "ccw"})),  # unloading outside a site
            (topic, fix(now - 20, lon + 0.002, lat, speed_kmh=20.0, sensors={"drum": "cw"})),
        ]
    )

    async def drum_alert() -> dict[str, Any] | None:
        found = [a for a in await alerts_of(server, vid, "illegal_dumping") if a["ended_ts"] is not None]
        return found[0] if found else None

    deadline = time.monotonic() + 20
    alert = None
    while alert is None and time.monotonic() < deadline:
        alert = await drum_alert()
        await asyncio.sleep(0.1)
    assert alert is not None, "the drum alert and its end"
    assert re.fullmatch(r"\d{8}-\d{4}", alert["number"]), alert["number"]
    assert alert["place"].startswith(("资江区", "碧云区")) and "第1网格" in alert["place"], alert["place"]
    assert alert["details"]["drum"] == "ccw"  # the end said cw: it adds, never overwrites
    assert (alert["end_lon"], alert["end_lat"]) == (round(lon + 0.002, 7), lat)
    assert alert["ended_ts"].endswith("Z") and alert["raised_at"].endswith("Z")


def test_check_config_fails_on_a_missing_or_empty_geofence_folder(tmp_path: Path) -> None:
    for folder in ("nowhere", "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        cfg = tmp_path / f"{folder}.toml"
        cfg.write_text(f'[geofences]\ndir = "{folder}"\n')
        run = subprocess.run(
            [sys.executable, "-m", "gpsd_server", "check-config", "--config", str(cfg)], capture_output=True, text=True
        )
        assert run.returncode == 2, run.stdout
        assert folder in run.stderr and ("not found" in run.stderr or "no zones" in run.stderr)
    cfg = tmp_path / "allowed.toml"
    cfg.write_text('[geofences]\ndir = "empty"\nallow_empty = true\n')
    ok = subprocess.run(
        [sys.executable, "-m", "gpsd_server", "check-config", "--config", str(cfg)], capture_output=True
    )
    assert ok.returncode == 0


def test_run_refuses_to_start_without_zones_unless_told_to(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text('[geofences]\ndir = "empty"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gpsd_server", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "cannot start: no zones" in run.stderr and "allow_empty" in run.stderr
