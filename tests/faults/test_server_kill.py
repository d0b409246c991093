"""The server SIGKILLed under load and restarted: the broker redelivers what
was not acknowledged, nothing it delivered is lost, no alert is raised twice."""

from __future__ import annotations

import asyncio
import time

from tests.faults.load import Publisher, cancel, stored, tampering_alerts, wait_until
from tools.procs import ServerProcess

LOAD_S = 16.0


async def test_sigkill_and_restart_loses_nothing(server_process: ServerProcess) -> None:
    srv, svc = server_process, server_process.svc
    srv.start()
    pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=50, rate=800)
    alarm_vehicle = pub.vehicle(3)
    publishing = asyncio.create_task(pub.run(LOAD_S))
    try:
        await asyncio.sleep(2)
        pub.alarm[alarm_vehicle] = 256  # power cut: one tampering alert that lasts across the crash
        await asyncio.sleep(3)
        srv.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(1)
        await asyncio.to_thread(srv.start)
        restarted_in = time.monotonic() - killed_at
        await asyncio.sleep(3)
        pub.alarm[alarm_vehicle] = 0
        await publishing
        await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 60, "all confirmed fixes")
        await asyncio.sleep(1.0)
    finally:
        await cancel(publishing)

    rows, keys = stored(srv.dsn, srv.prefix)
    assert pub.confirmed <= keys, f"{len(pub.confirmed - keys)} confirmed fixes missing"
    assert rows == len(keys) == len(pub.confirmed)
    alerts = tampering_alerts(srv.dsn, alarm_vehicle)
    assert len(alerts) == 1, alerts
    assert alerts[0][4] is not None, "the tampering alert was not closed after the restart"
    m = srv.metrics()
    print(
        f"\n[sigkill] {len(pub.confirmed)} fixes confirmed, restarted in {restarted_in:.1f} s, "
        f"redelivered duplicates after restart {m.get('gpsd_db_duplicates_total', 0):.0f}"
    )
    assert srv.stop(timeout=30) == 0


async def test_shutdown_during_outage_spools_then_replays_at_start(server_process: ServerProcess) -> None:
    srv, svc = server_process, server_process.svc
    srv.start()
    pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=20, rate=500)
    publishing = asyncio.create_task(pub.run(6.0))
    try:
        await asyncio.sleep(2)
        await asyncio.to_thread(svc.pg_stop)
        await publishing
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        assert srv.stop(timeout=30) == 0
        took = time.monotonic() - t0
        assert took < 10, f"shutdown took {took:.1f} s with the database away"
        assert "replayed at the next start" in srv.log_text()
        spooled = list((srv.workdir / ".state" / "spool").glob("*.spool"))
        assert spooled and spooled[0].stat().st_size > 8
        await asyncio.to_thread(svc.pg_start)
        await asyncio.to_thread(srv.start)
        await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 30, "replay at start")
    finally:
        await cancel(publishing)
        if srv.proc is not None and srv.proc.poll() is None:
            pass
    rows, keys = stored(srv.dsn, srv.prefix)
    assert pub.confirmed <= keys and rows == len(keys) == len(pub.confirmed)
    assert "spool replayed" in srv.log_text()
    print(f"\n[shutdown in outage] {len(pub.confirmed)} fixes, shutdown took {took:.1f} s")
    assert srv.stop(timeout=30) == 0
