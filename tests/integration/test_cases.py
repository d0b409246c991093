"""12319 cases end to end on the real broker and database, with the fleet
simulator (tools/sim) driving the patrol cars and the server's clock.

The simulator runs in this test, as fast as the server takes its fixes (in
rounds of ten simulated seconds, each waited for), and the server's clock
is the simulator's: a deadline of five minutes passes in a moment, and every
time the server writes is one the test knows exactly. The test files a case,
dispatches the car the server proposes first, has the simulator drive it
there, and checks that the server marks the case arrived from the fixes
alone (at the first fix of its stop), that an overdue call-back raises its
alert on the desk and ends it when the citizen is called, and that the
report's times per step are the test's. Then a restart: open cases and
their alerts come back, and an arrival the fixes show is found again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import psycopg
import pytest
import websockets

from gpsd_server.core.geo import haversine_m
from tests.fixtures.server import RunningServer, make_tokens, running, server_env
from tests.fixtures.services import MQTT_PORT, REPO
from tests.helpers import wait_for
from tools.sim import city as city_mod
from tools.sim.motion import Linger
from tools.sim.simulation import SimConfig, Simulation

PLACE = (112.3585, 28.5855)  # beside 辐射3路, north of the centre
RADIUS_M, STOP_S, CALLBACK_S, ARRIVE_S = 100.0, 30.0, 300.0, 600.0
OVERRIDES = {
    "GPSD_CASES__ARRIVE_RADIUS_M": str(RADIUS_M),
    "GPSD_CASES__ARRIVE_STOP_S": str(STOP_S),
    "GPSD_CASES__NORMAL_CALLBACK_S": str(CALLBACK_S),
    "GPSD_CASES__NORMAL_ARRIVE_S": str(ARRIVE_S),
    "GPSD_CASES__SYNC_S": "0.05",
}


class Clock:
    """The server's clock, set by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock(float(int(time.time())))


@pytest.fixture
def server_clock(clock: Clock) -> Callable[[], float]:
    return clock


@pytest.fixture
def server_overrides(own_database: str) -> dict[str, str]:
    return {"GPSD_DATABASE__DSN": own_database, **OVERRIDES}


class Driver:
    """The simulator under the test's control, publishing on the server's topics."""

    def __init__(self, server: Any, prefix: str, clock: Clock, mqtt: aiomqtt.Client) -> None:
        self.server, self.clock, self.mqtt = server, clock, mqtt
        cfg = SimConfig(
            start=clock.t, duration_s=None, seed=1712, interval_s=5, sigma_m=6.0, topic_prefix=prefix,
            counts={"patrol": 12, "muck_truck": 0, "mixer_truck": 0, "other": 0},
        )  # fmt: skip
        self.sim = Simulation(city_mod.load(REPO / "geofences"), cfg)
        self.published = 0
        self.fixes: dict[str, list[dict[str, Any]]] = {}

    def _taken(self) -> int:
        p = self.server.pipeline
        return int(p.fixes_accepted + sum(p.rejects.total.values()))

    async def _taken_up_to(self, n: int) -> None:
        await wait_for(lambda: self._taken() >= n, timeout=10, what="the round's fixes")

    async def run(self, seconds: float, *, until: Callable[[], bool] | None = None) -> None:
        """Advance the simulation (and the server's clock) in rounds of ten
        seconds; each round's fixes are taken by the server before the next."""
        end = self.sim.t + seconds
        while self.sim.t < end and not (until and until()):
            pubs = []
            for _ in range(10):
                pubs += self.sim.advance()
            self.clock.t = self.sim.t
            base = self._taken()
            for i in range(0, len(pubs), 10):  # aiomqtt warns past ten publishes in flight
                await asyncio.gather(*(self.mqtt.publish(p.topic, p.payload, qos=1) for p in pubs[i : i + 10]))
            for p in pubs:
                fix = json.loads(p.payload)
                fix["ts"] = parse(fix["ts"]) if isinstance(fix["ts"], str) else float(fix["ts"])
                self.fixes.setdefault(p.topic.split("/")[1], []).append(fix)
            await self._taken_up_to(base + len(pubs))
            await asyncio.sleep(0)  # the pipeline's batch is done; give the case driver its turn


@contextlib.asynccontextmanager
async def live(url: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every case and alert message of /ws/live while the block runs."""
    seen: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # the snapshot

        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") in ("case", "alert"):
                    seen.append(msg)

        task = asyncio.create_task(read())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{round((ts % 1) * 1e6):06d}Z"


def parse(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def alerts_until(
    http: httpx.AsyncClient, params: dict[str, str], done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The desk's alerts once the database has what /ws/live already showed."""
    for _ in range(400):
        found: list[dict[str, Any]] = (await http.get("/api/alerts", params=params)).json()["alerts"]
        if done(found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"alerts {params} never became what was expected")


async def case_state(http: httpx.AsyncClient, cid: int) -> dict[str, Any]:
    r = await http.get(f"/api/cases/{cid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def expected_arrival(fixes: list[dict[str, Any]], since: float) -> dict[str, Any]:
    """The rule, from what the simulator published: the first fix of the first
    stop within the radius that lasts STOP_S."""
    stop: dict[str, Any] | None = None
    for f in fixes:
        if f["ts"] < since:
            continue
        d = haversine_m(PLACE[0], PLACE[1], f["lon"], f["lat"])
        stopped = (f.get("speed_kmh") or 0.0) < 5.0
        if d > RADIUS_M:
            stop = None
        elif stop is None and stopped:
            stop = {**f, "d": d}
        elif stop is not None and stopped and f["ts"] - stop["ts"] >= STOP_S:
            return stop
    raise AssertionError("the simulated car never stopped at the place")


async def test_a_case_the_simulated_patrol_car_drives_to(server: RunningServer, clock: Clock) -> None:
    srv = server.server
    async with (
        aiomqtt.Client("127.0.0.1", MQTT_PORT, max_inflight_messages=500) as mqtt,
        httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http,
        live(server.ws_url()) as messages,
    ):
        drive = Driver(srv, server.prefix, clock, mqtt)
        await drive.run(30)  # every car on the map
        t_created = clock.t
        body = {"category": "muck_spill", "priority": "normal", "description": "路面渣土撒漏约20米",
                "lon": PLACE[0], "lat": PLACE[1], "reporter": "李女士"}  # fmt: skip
        r = await http.post("/api/cases", json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        await drive.run(60)

        proposal = (await http.get(f"/api/cases/{cid}/proposal", params={"limit": 5})).json()["vehicles"]
        assert len(proposal) == 5 and all(c["method"] == "road" for c in proposal)
        assert [c["eta_min"] for c in proposal] == sorted(c["eta_min"] for c in proposal)
        car = proposal[0]["id"]
        t_dispatched = clock.t
        r = await http.post(f"/api/cases/{cid}/dispatch", json={"vehicle_id": car, "comment": "最近的车"})
        assert r.status_code == 200 and r.json()["state"] == "dispatched", r.text
        route_m = drive.sim.goto(car, PLACE[0], PLACE[1], hold_s=1800)
        assert route_m > 200

        # Nobody presses a button: the fixes alone mark the case arrived.
        await drive.run(1800, until=lambda: (c := srv.cases.book.get(cid)) is not None and c.state == "arrived")
        assert isinstance(drive.sim.by_id[car].activity, Linger)
        await wait_for(lambda: not srv.cases._findings, what="the arrival written")
        full = await case_state(http, cid)
        case = full["case"]
        assert case["state"] == "arrived" and case["arrival_source"] == "gps" and case["on_site"] is True
        expected = expected_arrival(drive.fixes[car], t_dispatched)
        assert parse(case["arrived_at"]) == pytest.approx(expected["ts"], abs=1e-3)
        assert case["arrival_distance_m"] == pytest.approx(expected["d"], abs=0.1)
        arrived = next(e for e in full["events"] if e["kind"] == "arrived")
        assert arrived["by"] == "gps" and arrived["data"]["vehicle_id"] == car
        assert arrived["data"]["after_s"] == pytest.approx(expected["ts"] - t_dispatched, abs=1e-3)

        await drive.run(120)
        t_handled = clock.t
        assert (await http.post(f"/api/cases/{cid}/handle", json={"comment": "已清扫"})).status_code == 200
        # The call-back is due CALLBACK_S after handling: the server's tick raises it.
        await drive.run(CALLBACK_S + 20)
        kind = "case_callback_overdue"
        await wait_for(lambda: any(m.get("kind") == kind and m.get("phase") == "start" for m in messages),
                       what="the overdue call-back on /ws/live")  # fmt: skip
        desk = await alerts_until(http, {"kind": kind}, lambda found: bool(found))
        assert len(desk) == 1 and desk[0]["active"] and desk[0]["number"] and desk[0]["place"]
        alert = desk[0]
        assert parse(alert["ts"]) == pytest.approx(t_handled + CALLBACK_S, abs=1e-3)
        assert alert["vehicle_id"] == car and alert["details"]["case_id"] == cid and alert["zone_id"]
        t_called = clock.t
        assert (await http.post(f"/api/cases/{cid}/callback", json={"comment": "市民满意"})).status_code == 200
        await wait_for(lambda: any(m.get("kind") == kind and m.get("phase") == "end" for m in messages),
                       what="the call-back alert's end")  # fmt: skip
        ended = await alerts_until(http, {"kind": kind, "state": "all"}, lambda f: bool(f) and not f[0]["active"])
        assert [a["id"] for a in ended] == [alert["id"]] and not ended[0]["active"]
        assert parse(ended[0]["ended_ts"]) == pytest.approx(t_called, abs=1e-3)
        assert ended[0]["details"]["overdue_s"] == pytest.approx(t_called - t_handled - CALLBACK_S, abs=0.1)
        t_closed = clock.t
        assert (await http.post(f"/api/cases/{cid}/close", json={"comment": "结案"})).status_code == 200

        mine = [m for m in messages if m["type"] == "case" and m["id"] == cid]
        await wait_for(lambda: any(m["state"] == "closed" for m in mine + messages if m.get("id") == cid))
        mine = [m for m in messages if m["type"] == "case" and m["id"] == cid]
        kinds = [m["event"]["kind"] for m in mine]
        assert kinds == ["created", "dispatched", "arrived", "handled", "called_back", "closed"]

        report = await http.get("/api/reports/cases", params={"start": iso(t_created - 1), "end": iso(clock.t + 1)})
        steps = {s["step"]: s for s in report.json()["steps"]}
        took = {
            "dispatch": t_dispatched - t_created, "arrive": expected["ts"] - t_dispatched,
            "handle": t_handled - expected["ts"], "callback": t_called - t_handled, "close": t_closed - t_called,
            "total": t_closed - t_created,
        }  # fmt: skip
        for step, seconds in took.items():
            assert steps[step]["count"] == 1
            assert steps[step]["median_s"] == pytest.approx(seconds, abs=1e-3), step
            assert steps[step]["p90_s"] == pytest.approx(seconds, abs=1e-3), step
        assert steps["callback"]["overdue"] == 1 and steps["arrive"]["overdue"] == 0
        by_car = {v["vehicle_id"]: v for v in report.json()["vehicle"]}
        assert by_car[car]["arrived_gps"] == 1 and by_car[car]["arrive_median_s"] == pytest.approx(took["arrive"])
        assert (
            report.json()["category"][0]["key"] == "muck_spill" and report.json()["category"][0]["name"] == "渣土撒漏"
        )


@pytest.fixture
def restart_env(own_database: str, unique: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield server_env(own_database, unique, tmp_path, OVERRIDES)


async def test_open_cases_and_their_alerts_survive_a_restart(restart_env: dict[str, str], clock: Clock) -> None:
    dsn = restart_env["GPSD_DATABASE__DSN"]
    prefix = restart_env["GPSD_MQTT__TOPIC_PREFIX"]
    tokens: dict[str, str] = {}
    car = "PC-004"
    t0 = clock.t
    async with running(restart_env, clock) as srv:
        tokens.update(make_tokens(dsn, "restart"))
        base = f"http://127.0.0.1:{srv.http_port}"
        headers = {"Authorization": f"Bearer {tokens['operator']}"}
        async with (
            httpx.AsyncClient(base_url=base, headers=headers) as http,
            aiomqtt.Client("127.0.0.1", MQTT_PORT) as mq,
        ):
            far = (PLACE[0] + 0.03, PLACE[1])  # 3 km east
            await mq.publish(f"{prefix}/{car}/fix", json.dumps({"ts": t0, "lon": far[0], "lat": far[1]}), qos=1)
            await wait_for(lambda: car in srv.hub.positions, what="the car")
            filed = await http.post("/api/cases", json={"category": "other", "lon": PLACE[0], "lat": PLACE[1]})
            cid = filed.json()["id"]
            assert (await http.post(f"/api/cases/{cid}/dispatch", json={"vehicle_id": car})).status_code == 200
            clock.t = t0 + ARRIVE_S + 5
            await wait_for(lambda: srv.cases.book.open_alerts(), what="the arrive step overdue")
            await wait_for(lambda: srv.ledger.open_count >= 1, what="the ledger")
    # While the server is away, the car's fixes at the place are stored (as a
    # server that died before writing the case would have left them).
    stop_at = t0 + ARRIVE_S + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        for k in range(4):
            conn.execute(
                "INSERT INTO fixes (vehicle_id, ts, received_at, lon, lat, speed_kmh) VALUES"
                " (%s, to_timestamp(%s), to_timestamp(%s), %s, %s, 0)",
                (car, stop_at + 15 * k, stop_at + 15 * k, PLACE[0] + 0.0002, PLACE[1]),
            )
    clock.t = stop_at + 100
    async with running(restart_env, clock) as srv:
        await wait_for(lambda: not srv.cases._findings, what="the replayed arrival written")

        def arrive_alerts() -> list[tuple[Any, ...]]:
            with psycopg.connect(dsn) as conn:
                return conn.execute(
                    "SELECT id, extract(epoch FROM ended_ts) FROM alerts WHERE kind = 'case_arrive_overdue'"
                ).fetchall()

        await wait_for(lambda: any(r[1] is not None for r in arrive_alerts()), what="the alert's end stored")
        rows = arrive_alerts()
        with psycopg.connect(dsn) as conn:
            state, arrived_at, source = conn.execute(
                "SELECT state, extract(epoch FROM arrived_at), arrival_source FROM cases WHERE id = %s", (cid,)
            ).fetchone()  # type: ignore[misc]
        assert (state, source) == ("arrived", "gps") and float(arrived_at) == pytest.approx(stop_at)
        assert len(rows) == 1 and rows[0][1] is not None  # raised once, before the restart; ended after it
        assert float(rows[0][1]) == pytest.approx(stop_at)
        assert srv.cases.book.get(cid) is not None and srv.cases.book.open_alerts() == []
