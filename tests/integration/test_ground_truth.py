"""The demo fleet through the real broker, server and database: every
injected violation is alerted, and no alert is without a cause.

The simulator replays 15 simulated minutes at x60 with one violation of each
kind injected (seeded), then tools/truth_compare.py scores the alerts the
server stored against the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import websockets

from tests.fixtures.server import RunningServer
from tests.fixtures.services import MQTT_PORT, REPO
from tests.helpers import wait_for

RUN_START = "2025-06-02T10:00:00+08:00"


@pytest.fixture
def server_overrides(own_database: str) -> dict[str, str]:
    # The seeded run is in the past: accept it, in a database of its own (other
    # tests drive the same vehicle ids now, which would make the whole run late).
    return {"GPSD_INGEST__MAX_AGE_DAYS": "100000", "GPSD_DATABASE__DSN": own_database}


@pytest.fixture
def db(own_database: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(own_database, autocommit=True) as conn:
        yield conn


async def test_seeded_demo_run_recall_and_precision(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    truth = tmp_path / "truth.jsonl"
    live_alerts: set[str] = set()

    async with websockets.connect(server.ws_url(), max_size=None) as ws:

        async def collect() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "alert" and msg.get("phase") in ("start", "instant"):
                    live_alerts.add(msg["id"])

        collector = asyncio.create_task(collect())
        sim = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "tools" / "simulate.py"),
            "--speed", "60", "--duration", "900", "--start", RUN_START, "--inject", "all", "--seed", "7",
            "--truth", str(truth), "--topic-prefix", server.prefix, "--port", str(MQTT_PORT), "--quiet",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(sim.communicate(), 120)
        assert sim.returncode == 0, out.decode()
        srv = server.server
        sent = sum(1 for line in truth.read_text().splitlines() if '"_run_end"' in line)
        assert sent == 1
        await wait_for(lambda: srv.writer.queued_rows == 0 and srv.ingest.messages_in > 20000, timeout=60)
        await asyncio.sleep(1.0)
        collector.cancel()

    compare = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "tools" / "truth_compare.py"),
        "--truth", str(truth), "--dsn", server.dsn, "--strict",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    report, _ = await compare.communicate()
    print(report.decode())
    assert compare.returncode == 0, report.decode()

    stored = {
        str(r[0])
        for r in db.execute(
            "SELECT id FROM alerts WHERE ts BETWEEN %s::timestamptz AND %s::timestamptz + interval '20 minutes'"
            " AND kind <> 'zone'",
            (RUN_START, RUN_START),
        )
    }
    assert stored, "the run raised no alerts"
    assert stored <= live_alerts, f"{len(stored - live_alerts)} stored alerts never reached the websocket"

    # The fleet's parked vehicles (every fix of the run at 0 km/h, GPS noise σ 8 m)
    # show near-zero mileage in the report: their wander is drift, not kilometres.
    parked = [
        str(r[0])
        for r in db.execute(
            "SELECT vehicle_id FROM fixes WHERE ts BETWEEN %s::timestamptz AND %s::timestamptz + interval '20 minutes'"
            " AND vehicle_id = ANY(%s) GROUP BY vehicle_id HAVING max(speed_kmh) = 0 AND count(*) >= 60",
            (RUN_START, RUN_START, [v for (v,) in db.execute("SELECT id FROM vehicles")]),
        )
    ]
    assert len(parked) >= 20, "the demo city parks part of its fleet"
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        report = (await http.get("/api/reports/mileage", params={"day": RUN_START[:10]})).json()
    km = {v["id"]: v["distance_km"] for v in report["vehicles"]}
    worst = max(parked, key=lambda v: km[v])
    flags = db.execute(
        "SELECT flags, count(*) FROM fixes WHERE vehicle_id = %s AND ts BETWEEN %s::timestamptz"
        " AND %s::timestamptz + interval '20 minutes' GROUP BY flags ORDER BY flags",
        (worst, RUN_START, RUN_START),
    ).fetchall()
    assert km[worst] < 0.05, f"parked {worst} drove {km[worst]} km in 15 minutes; fixes by flags {flags}"
