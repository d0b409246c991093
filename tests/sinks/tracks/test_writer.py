"""The track writer without a database: it spools, and a full spool holds
intake back instead of dropping anything."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import pytest

from gpsd_server.model import Fix
from gpsd_server.settings import DatabaseSettings
from gpsd_server.sinks.tracks.writer import TrackWriter
from tests.fixtures.services import free_port


def fixes(n: int, start: int) -> list[Fix]:
    return [Fix("V1", 1.7e9 + start + i, 112.3, 28.5, received_at=1.7e9, speed_kmh=10.0) for i in range(n)]


def writer(tmp_path: Path, **kw: object) -> TrackWriter:
    args: dict[str, object] = {
        "dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",  # nothing listens there
        "batch_max_rows": 50,
        "flush_interval_ms": 10,
        "retry_min_s": 30.0,
        "retry_max_s": 30.0,
        "connect_timeout_s": 1.0,
        "spool_fsync_ms": 10,
        "shutdown_timeout_s": 3.0,
    }
    return TrackWriter(DatabaseSettings(**{**args, **kw}), spool_path=tmp_path / "w.spool")  # type: ignore[arg-type]


async def test_database_away_put_resolves_once_spooled(tmp_path: Path) -> None:
    w = writer(tmp_path)
    task = asyncio.create_task(w.run())
    futs = [await w.put(fixes(10, i * 10)) for i in range(20)]
    await asyncio.wait_for(asyncio.gather(*futs), 10)
    assert not w.database_available
    assert w.stats.rows_spooled == 200 and w.stats.outages == 1
    assert w.spool_bytes > 0 and w.spool_backlog_bytes == w.spool_bytes
    await w.close()
    await asyncio.wait_for(task, 10)
    assert (tmp_path / "w.spool").stat().st_size > w.spool_bytes // 2  # kept for the next start


async def test_full_spool_is_an_error_and_holds_intake(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = writer(tmp_path, spool_max_mb=20_000 / 1048576, queue_max_rows=200)
    task = asyncio.create_task(w.run())
    futs: list[asyncio.Future[None]] = []
    blocked: asyncio.Task[asyncio.Future[None]] | None = None
    with caplog.at_level(logging.ERROR, logger="gpsd_server.sinks.tracks.writer"):
        for i in range(100):
            put = asyncio.create_task(w.put(fixes(10, i * 10)))
            done, _ = await asyncio.wait({put}, timeout=0.5)
            if not done:
                blocked = put
                break
            futs.append(put.result())
            await asyncio.sleep(0.02)
    assert blocked is not None, "put never blocked"
    assert w.flow_control_active and w.spool_full
    assert w.stats.spool_full_events == 1
    assert "SPOOL FULL" in caplog.text
    spooled = [f for f in futs if f.done()]
    assert len(spooled) * 10 == w.stats.rows_spooled > 0
    assert w.queued_rows >= 200  # the rest waits in memory, nothing dropped
    assert not any(f.done() for f in futs[len(spooled) :])

    t0 = time.monotonic()
    await w.close()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - t0 < 5  # bounded by shutdown_timeout_s, not waiting for the database
    with pytest.raises(RuntimeError, match="closed"):
        await blocked
    # Not durable, so never acknowledged: the broker delivers those again.
    assert w.stats.rows_not_durable == w.stats.rows_in - w.stats.rows_spooled
    assert all(f.cancelled() for f in futs[len(spooled) :])


async def test_alerts_without_fixes_are_written_at_once(tmp_path: Path, database: str) -> None:
    """Found by 12319 deadlines: an alert the tick raises (offline, an overdue
    case step) with no fix in the queue waited for the next fix to be stored."""
    import psycopg

    from gpsd_server.model import Event
    from gpsd_server.store.batch import AlertRow
    from gpsd_server.store.schema import migrate

    async with await psycopg.AsyncConnection.connect(database) as c:
        await migrate(c)
    w = TrackWriter(DatabaseSettings(dsn=database, flush_interval_ms=10), spool_path=tmp_path / "w.spool")
    task = asyncio.create_task(w.run())
    try:
        key = f"offline-{time.time_ns()}"
        event = Event("offline", "start", "V-TICK", 1.7e9, 112.3, 28.5, key, "warning")
        durable = await w.put((), [AlertRow(str(uuid.uuid4()), event, 1.7e9 + 1)])
        await asyncio.wait_for(durable, 10)
        with psycopg.connect(database) as c:
            assert c.execute("SELECT count(*) FROM alerts WHERE key = %s", (key,)).fetchone() == (1,)
    finally:
        await w.close()
        await asyncio.wait_for(task, 10)


async def test_a_session_that_held_leases_is_never_replaced(tmp_path: Path, database: str) -> None:
    """A scale-out worker's leases live on the writer's session: when that
    session ends (here: terminated by the server), the writer does not
    reconnect to write on a session without them; it ends with ClusterError."""
    import psycopg

    from gpsd_server.errors import ClusterError
    from gpsd_server.store import leases
    from gpsd_server.store.schema import migrate

    async with await psycopg.AsyncConnection.connect(database) as c:
        await migrate(c)
    w = TrackWriter(DatabaseSettings(dsn=database, flush_interval_ms=10), spool_path=tmp_path / "w.spool", spool=False)
    task = asyncio.create_task(w.run())
    partition = 900 + time.time_ns() % 100
    assert await w.on_session(lambda conn: leases.try_take(conn, partition)) is True
    await asyncio.wait_for(await w.put(fixes(5, 0)), 10)  # written on the lease's session
    pid = await w.on_session(lambda conn: conn.info.backend_pid)
    with psycopg.connect(database, autocommit=True) as admin:
        holder = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted",
            (leases.LEASE_NS, partition),
        ).fetchone()
        assert holder == (pid,)
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await w.put(fixes(5, 10))
    with pytest.raises(ClusterError):
        await asyncio.wait_for(task, 10)


async def test_a_batch_the_database_refuses_is_spooled_and_the_writer_goes_on(tmp_path: Path, database: str) -> None:
    """Found by the benchmark: a unique violation in one batch ended the writer
    and with it the server (and the same batch failed again after a restart).
    A refused batch is spooled (durable, acknowledged), counted and logged, and
    written once the cause is gone."""
    import psycopg

    from gpsd_server.store.schema import migrate

    async with await psycopg.AsyncConnection.connect(database) as c:
        await migrate(c)
    vehicle = f"V-REFUSED-{time.time_ns()}"
    refuse = (
        "CREATE OR REPLACE FUNCTION refuse_fix() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.vehicle_id = '{vehicle}' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$;"
        "CREATE TRIGGER refuse_fix BEFORE INSERT ON fixes FOR EACH ROW EXECUTE FUNCTION refuse_fix()"
    )
    settings = DatabaseSettings(dsn=database, flush_interval_ms=10, retry_min_s=0.2, retry_max_s=0.5)
    w = TrackWriter(settings, spool_path=tmp_path / "w.spool")
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(refuse)
        task = asyncio.create_task(w.run())
        try:
            batch = [Fix(vehicle, 1.7e9 + i, 112.3, 28.5, received_at=1.7e9) for i in range(5)]
            await asyncio.wait_for(await w.put(batch), 10)  # durable: in the spool
            assert w.stats.refused >= 1 and w.stats.rows_spooled == 5 and not task.done()
            count = "SELECT count(*) FROM fixes WHERE vehicle_id = %s"
            assert admin.execute(count, (vehicle,)).fetchone() == (0,)
            admin.execute("DROP TRIGGER refuse_fix ON fixes")
            for _ in range(100):
                if admin.execute(count, (vehicle,)).fetchone() == (5,):
                    break
                await asyncio.sleep(0.1)
            assert admin.execute(count, (vehicle,)).fetchone() == (5,)
            assert not task.done()
        finally:
            admin.execute("DROP TRIGGER IF EXISTS refuse_fix ON fixes")
            await w.close()
            await asyncio.wait_for(task, 10)


async def test_a_backlog_is_written_in_batches_of_half_the_queue_up_to_the_maximum(
    tmp_path: Path, database: str
) -> None:
    """Found by the benchmark: 25,000-row batches drained batched messages 19 %
    faster than 5,000-row ones, and single-fix messages 15 % slower, because a
    batch of the broker's whole receive window left nothing to read while it
    committed. A batch takes half of what waits, at least ``batch_rows``, at
    most ``batch_max_rows``; each batch is one transaction, so PostgreSQL's
    ``xmin`` tells the batches apart."""
    import psycopg

    from gpsd_server.store.schema import migrate

    async with await psycopg.AsyncConnection.connect(database) as c:
        await migrate(c)
    vehicle = f"V-BACKLOG-{time.time_ns()}"
    settings = DatabaseSettings(dsn=database, batch_rows=100, batch_max_rows=1000, flush_interval_ms=10)
    w = TrackWriter(settings, spool_path=tmp_path / "w.spool", spool=False)
    rows = [Fix(vehicle, 1.7e9 + i, 112.3, 28.5, received_at=1.7e9, speed_kmh=10.0) for i in range(4000)]
    # Queued before the writer runs: a backlog of 40 messages of 100 fixes.
    futs = [await w.put(rows[i : i + 100]) for i in range(0, 4000, 100)]
    task = asyncio.create_task(w.run())
    try:
        await asyncio.wait_for(asyncio.gather(*futs), 30)
        with psycopg.connect(database) as c:
            sizes = [
                n
                for (n,) in c.execute(
                    "SELECT count(*) FROM fixes WHERE vehicle_id = %s GROUP BY xmin::text::bigint"
                    " ORDER BY xmin::text::bigint",
                    (vehicle,),
                ).fetchall()
            ]
        assert sizes == [1000, 1000, 1000, 500, 200, 100, 100, 100], sizes
    finally:
        await w.close()
        await asyncio.wait_for(task, 10)
