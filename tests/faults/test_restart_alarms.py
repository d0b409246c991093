"""Rule state across a restart (graceful stop and SIGKILL) under load, end to
end: alarm bits set before the restart and cleared after it end their alert;
a bit that stays set is one alert; an alarm cleared and set again is a new
alert, before or after the restart; an overspeed that spans the restart ends
after it with its peak and full duration. Nothing is raised twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.load import Publisher, alerts_of, cancel, stored, wait_until
from tools.procs import ServerProcess

SOS = 1  # JT/T 808 alarm bit 0: an "sos" alert, key alarm:sos


async def at(t0: float, s: float) -> None:
    await asyncio.sleep(max(0.0, t0 + s - time.monotonic()))


@pytest.mark.parametrize("how", ["graceful", "sigkill"])
async def test_alarm_state_survives_the_restart(server_process: ServerProcess, how: str) -> None:
    srv, svc = server_process, server_process.svc
    srv.start()
    pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=10, rate=200)  # 20 fixes/s of each vehicle
    a, b, c, d, e = (pub.vehicle(i) for i in range(5))
    stop_publishing = asyncio.Event()
    publishing = asyncio.create_task(pub.run(1000, stop=stop_publishing))
    t0 = time.monotonic()
    try:
        await at(t0, 2)
        for v in (a, b, c, d):
            pub.alarm[v] = SOS
        pub.speed[e] = 100.0  # class other: limit 80 km/h, overspeed after 15 s of fix time
        await at(t0, 4)
        pub.alarm[c] = 0  # c's first episode ends before the restart
        await at(t0, 6)
        down = time.monotonic()
        if how == "graceful":
            assert await asyncio.to_thread(srv.stop, 30) == 0
        else:
            await asyncio.to_thread(srv.kill)
        await asyncio.sleep(1.0)  # fixes go on meanwhile: the broker keeps them for the session
        await asyncio.to_thread(srv.start)
        up = time.monotonic()
        await at(up, 2)
        pub.alarm[a] = 0  # set before, cleared after: the alert ends
        pub.alarm[d] = 0
        pub.alarm[c] = SOS  # cleared before, set after: a new alert
        await at(up, 4)
        pub.alarm[d] = SOS  # set, cleared and set again after the restart: a new alert
        await at(up, 5)
        pub.speed[e] = 4.0  # the overspeed that spans the restart ends
        await at(up, 6)
        pub.alarm[b] = 0  # set all along: one alert, ended now
        await at(up, 8)
        stop_publishing.set()
        await publishing
        await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 60, "all confirmed fixes")
        await asyncio.sleep(1.5)  # what the last fixes raise is committed
    finally:
        stop_publishing.set()
        await cancel(publishing)

    rows, keys = stored(srv.dsn, srv.prefix)
    assert pub.confirmed <= keys and rows == len(keys) == len(pub.confirmed)
    sos = {v: alerts_of(srv.dsn, v, "sos") for v in (a, b, c, d, e)}
    summary = {v[-4:]: [(str(x[2].time())[:8], x[3] is not None) for x in al] for v, al in sos.items()}
    assert len(sos[a]) == 1 and sos[a][0][3] is not None, summary
    assert len(sos[b]) == 1 and sos[b][0][3] is not None, summary
    assert len(sos[c]) == 2 and sos[c][0][3] is not None and sos[c][1][3] is None, summary
    assert sos[c][1][2] > sos[c][0][3], summary
    assert len(sos[d]) == 2 and sos[d][0][3] is not None and sos[d][1][3] is None, summary
    assert sos[d][1][2] >= sos[d][0][3], summary
    assert sos[e] == [], summary
    speeding = alerts_of(srv.dsn, e, "overspeed")
    assert len(speeding) == 1 and speeding[0][3] is not None, speeding
    details = speeding[0][4]
    spanned = (speeding[0][3] - speeding[0][2]).total_seconds()
    assert details["peak_kmh"] >= 100 and details["duration_s"] >= spanned - 30, details
    others = [alerts_of(srv.dsn, pub.vehicle(i), "sos") for i in range(5, pub.vehicles)]
    assert not any(others)
    print(
        f"\n[restart with alarms, {how}] {len(pub.confirmed)} fixes; down {up - down:.1f} s; sos alerts per "
        f"vehicle {dict((k, len(v)) for k, v in summary.items())}; overspeed across the restart: one alert, "
        f"peak {details['peak_kmh']} km/h over {details['duration_s']} s of fix time"
    )
    assert srv.stop(timeout=30) == 0
