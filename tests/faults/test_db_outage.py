"""PostgreSQL stopped under load: the writer spools, ingest and live alerts go
on, and after the database is back every confirmed fix is stored once."""

from __future__ import annotations

import asyncio
import re
import time

from tests.faults.load import LiveListener, Publisher, cancel, stored, tampering_alerts, wait_until
from tools.procs import ServerProcess

LOAD_S = 40.0
OUTAGE_AT_S = 5.0
OUTAGE_S = 30.0  # the issue: PostgreSQL stopped 30 s during 1,000 fixes/s


async def sample_metrics(srv: ServerProcess, samples: list[dict[str, float]]) -> None:
    while True:
        m = await asyncio.to_thread(srv.metrics)
        if m:
            samples.append(m)
        await asyncio.sleep(0.5)


async def test_database_outage_spools_and_replays(server_process: ServerProcess) -> None:
    srv, svc = server_process, server_process.svc
    srv.start()
    pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=50, rate=1000)
    alarm_vehicle = pub.vehicle(7)
    listener = LiveListener(srv.ws_url(), [alarm_vehicle])
    listen = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.ready.wait(), 10)
    samples: list[dict[str, float]] = []
    sampler = asyncio.create_task(sample_metrics(srv, samples))
    publishing = asyncio.create_task(pub.run(LOAD_S))
    try:
        await asyncio.sleep(OUTAGE_AT_S)
        await asyncio.to_thread(svc.pg_stop)
        down_at = time.monotonic()
        await asyncio.sleep(3)
        pub.alarm[alarm_vehicle] = 256  # main power cut: a tampering alert, raised while the database is away
        await asyncio.sleep(3)
        pub.alarm[alarm_vehicle] = 0
        await asyncio.sleep(OUTAGE_S - 6)
        up_at = time.monotonic()
        await asyncio.to_thread(svc.pg_start)
        await publishing
        await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 60, "all confirmed fixes")
        await asyncio.sleep(1.0)  # let anything extra (a duplicate would show) arrive
    finally:
        await cancel(publishing)
        await cancel(sampler)
        await cancel(listen)

    rows, keys = stored(srv.dsn, srv.prefix)
    assert pub.confirmed <= keys, f"{len(pub.confirmed - keys)} confirmed fixes missing"
    assert rows == len(keys) == len(pub.confirmed), "a fix stored twice, or one nobody sent"
    assert len(pub.confirmed) >= 0.9 * pub.rate * LOAD_S

    # The tampering alert reached the websocket live, while the database was down.
    live = [(t, m) for t, m in listener.alerts if m["kind"] == "tampering" and m["phase"] == "start"]
    assert live, f"no live tampering alert; got {listener.alerts}"
    assert down_at < live[0][0] < up_at
    # ... and was stored once, closed when the bit cleared.
    db_alerts = tampering_alerts(srv.dsn, alarm_vehicle)
    assert len(db_alerts) == 1 and db_alerts[0][4] is not None, db_alerts

    peak_spool = max(m.get("gpsd_spool_bytes", 0) for m in samples)
    assert peak_spool > 0
    assert min(m.get("gpsd_db_available", 1) for m in samples) == 0
    final = srv.metrics()
    assert final["gpsd_spool_bytes"] == 0 and final["gpsd_spool_backlog_bytes"] == 0
    assert final["gpsd_db_available"] == 1 and final["gpsd_spool_full"] == 0
    assert final["gpsd_spool_replayed_rows_total"] > 0.5 * pub.rate * OUTAGE_S * 0.8
    log = srv.log_text()
    assert "spooling to" in log and "spool replayed" in log
    replay = re.search(r"spool replayed: (\d+) fixes in ([\d.]+) s \((\d+)/s\)", log)
    print(
        f"\n[db outage] {len(pub.confirmed)} fixes confirmed, outage {up_at - down_at:.1f} s, "
        f"spool peak {peak_spool / 1e6:.2f} MB, replay {replay.group(0) if replay else '?'}"
    )
    assert srv.stop(timeout=30) == 0
