"""Mosquitto restarted under load: the publisher re-sends what the broker did
not confirm, the server reconnects with its persistent session, and every
confirmed fix is stored once."""

from __future__ import annotations

import asyncio
import time

from tests.faults.load import Publisher, cancel, stored, wait_until
from tools.procs import ServerProcess

LOAD_S = 16.0


async def test_broker_restart_loses_no_fix(server_process: ServerProcess) -> None:
    srv, svc = server_process, server_process.svc
    srv.start()
    pub = Publisher(svc.mqtt_port, srv.prefix, vehicles=50, rate=800)
    publishing = asyncio.create_task(pub.run(LOAD_S))
    try:
        await asyncio.sleep(5)
        t0 = time.monotonic()
        await asyncio.to_thread(svc.mq_stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(svc.mq_start)
        down_s = time.monotonic() - t0
        await publishing
        await wait_until(lambda: stored(srv.dsn, srv.prefix)[0] >= len(pub.confirmed), 60, "all confirmed fixes")
        await asyncio.sleep(1.0)
    finally:
        await cancel(publishing)

    rows, keys = stored(srv.dsn, srv.prefix)
    assert pub.confirmed <= keys, f"{len(pub.confirmed - keys)} confirmed fixes missing"
    assert rows == len(keys) == len(pub.confirmed)
    assert pub.reconnects >= 1
    log = srv.log_text()
    assert "unavailable" in log and log.count("MQTT connected") >= 2
    print(
        f"\n[broker restart] {len(pub.confirmed)} fixes confirmed, broker down {down_s:.1f} s, "
        f"publisher re-sent after {pub.reconnects} reconnect(s)"
    )
    assert srv.stop(timeout=30) == 0
