"""Test data for the history tests: fixes written straight into the real
TimescaleDB with COPY (old days included: the decoder refuses fixes older
than 30 days), and the history routes mounted on a running server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import shapely
from shapely.geometry import LineString

from tests.conftest import RunningServer

# ts, lon, lat, speed_kmh, heading, flags
Row = tuple[datetime, float, float, float | None, float | None, int]


def mount_history(running: RunningServer) -> None:
    """Serve api.history on the test server, replacing the old track route
    (until http.py includes the router itself, after which this does nothing)."""
    from gpsd_server.api import history

    app = running.server.app
    if any(getattr(r, "path", None) == "/ws/replay" for r in app.router.routes):
        return
    old = "/api/vehicles/{vehicle_id}/track"
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != old]
    app.include_router(history.router(running.server))


def insert_fixes(
    db: psycopg.Connection[Any],
    vehicle_id: str,
    rows: Sequence[Row],
    *,
    vehicle_class: str = "other",
    company: str | None = None,
    plate: str | None = None,
) -> None:
    db.execute(
        "INSERT INTO vehicles (id, plate, class, company) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (vehicle_id, plate, vehicle_class, company),
    )
    with (
        db.cursor() as cur,
        cur.copy(
            "COPY fixes (vehicle_id, ts, received_at, lon, lat, speed_kmh, heading, alt_m, flags) FROM STDIN"
        ) as copy,
    ):
        for ts, lon, lat, speed, heading, flags in rows:
            copy.write_row((vehicle_id, ts, ts, lon, lat, speed, heading, 40.0, flags))


def day_ago(days: float, hour_utc: int = 0) -> datetime:
    base = datetime.now(UTC).replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    return base - timedelta(days=days)


def along(
    coords: Sequence[tuple[float, float]], start: datetime, *, points: int, step_s: float, speed: float
) -> list[Row]:
    """``points`` fixes evenly spaced along a polyline, ``step_s`` apart."""
    line = LineString(coords)
    out: list[Row] = []
    for i in range(points):
        p = shapely.line_interpolate_point(line, i / max(points - 1, 1), normalized=True)
        out.append((start + timedelta(seconds=i * step_s), p.x, p.y, speed, 90.0, 0))
    return out


def parked(lon: float, lat: float, start: datetime, *, seconds: float, step_s: float) -> list[Row]:
    """A vehicle standing still, with a few metres of GPS noise."""
    n = int(seconds // step_s) + 1
    return [
        (start + timedelta(seconds=i * step_s), lon + (i % 3 - 1) * 2e-5, lat + (i % 2) * 2e-5, 0.0, 0.0, 0)
        for i in range(n)
    ]
