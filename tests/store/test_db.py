"""The database probe against the real PostgreSQL: it ends when cancelled,
whenever the cancellation lands.

The server's shutdown cancels the probe and its TaskGroup waits for it. With
Python 3.11's ``asyncio.wait_for`` around the probe's ``SELECT 1``, a
cancellation that arrived as the answer did was lost and the probe ran on:
the shutdown hung (seen in CI). Here cancellations land at spread-out moments
of a fast probe cycle; with ``wait_for`` a few percent of them were lost, so
this fails on that code."""

from __future__ import annotations

import asyncio
import random

from gpsd_server.settings import DatabaseSettings
from gpsd_server.store.db import Database

TRIALS = 200


async def test_the_probe_ends_on_every_cancellation(database: str) -> None:
    # A probe every millisecond (below the configurable 0.1 s) puts many answers near a cancellation.
    db = Database(DatabaseSettings(dsn=database, health_check_s=0.001))
    await db.open()  # as in the server: the probe checks the pool when the database comes back
    rng = random.Random(808)
    lost = 0
    for _ in range(TRIALS):
        probe = asyncio.create_task(db.probe_forever())
        await asyncio.sleep(0.01 + rng.random() * 0.003)
        probe.cancel()
        _, running = await asyncio.wait([probe], timeout=1.0)
        if running:
            lost += 1
            while not probe.done():  # end it, so its connection closes
                probe.cancel()
                await asyncio.wait([probe], timeout=0.1)
    await db.close()
    assert lost == 0, f"{lost} of {TRIALS} cancellations lost: the probe ran on"
