"""Fixes written by ``write_batch``: stored once however often a batch is
written, and the hourly mileage summary (``fix_hours``) equal to a scan of
the fixes whatever the order, duplicates and flags."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gpsd_server.model import Event, Fix, FixFlag, Sensors
from gpsd_server.store import history
from gpsd_server.store.batch import (
    _LAST_SQL,
    _MOVE_SQL,
    STAGE_SQL,
    AlertRow,
    MileageRule,
    copy_fixes_stage,
    hours_sql,
    rebuild_hours,
    write_batch,
)
from gpsd_server.store.schema import migrate
from tests.store.plans import rows_handled

DAY = datetime(2021, 6, 1, tzinfo=UTC)  # far from the days other tests write
RULE = MileageRule(moving_kmh=5.0, gap_s=300.0)


@pytest.fixture
async def conn(database: str) -> AsyncIterator[psycopg.Connection[Any]]:
    async with await psycopg.AsyncConnection.connect(database) as c:
        await migrate(c)
    with psycopg.connect(database) as c:
        c.execute(STAGE_SQL)
        c.commit()
        yield c


@pytest.fixture
def vehicle() -> str:
    return f"FB-{uuid.uuid4().hex[:8]}"


def drive(vehicle: str, start: datetime, n: int, *, step_s: float = 10.0, flags: int = 0) -> list[Fix]:
    """A vehicle driving east with stops (speed 0 every 7th fix) and one silence longer than gap_s."""
    t0 = start.timestamp()
    out = []
    for i in range(n):
        ts = t0 + i * step_s + (400.0 if i > n // 2 else 0.0)
        speed = 0.0 if i % 7 == 0 else 30.0 + i % 5
        out.append(Fix(vehicle, ts, 112.3 + i * 1e-4, 28.5 + (i % 3) * 1e-5, ts + 1, speed, 90.0, flags=FixFlag(flags)))
    return out


async def reports(database: str, vehicle: str, day: datetime = DAY) -> tuple[Any, Any]:
    """(from the summary, from the scan) for the vehicle's day."""
    async with await psycopg.AsyncConnection.connect(database) as a:
        await a.execute("INSERT INTO vehicles (id) VALUES (%s) ON CONFLICT DO NOTHING", (vehicle,))
        t1 = day + timedelta(days=1)
        fast = await history.daily_mileage_from_hours(a, day, t1, moving_kmh=RULE.moving_kmh, gap_s=RULE.gap_s)
        scan = await history.daily_mileage(a, day, t1, moving_kmh=RULE.moving_kmh, gap_s=RULE.gap_s)
    assert fast is not None
    return [r for r in fast if r[0] == vehicle], [r for r in scan if r[0] == vehicle]


def assert_same(fast: Sequence[Any], scan: Sequence[Any]) -> None:
    assert len(fast) == len(scan) == 1
    (f,), (s,) = fast, scan
    assert f[7] == s[7]  # fixes
    assert f[4] == pytest.approx(s[4], rel=1e-9, abs=1e-9)  # km
    assert f[5] == pytest.approx(s[5], rel=1e-9, abs=1e-6)  # driving s
    assert f[6] == pytest.approx(s[6])  # max km/h


def write(conn: psycopg.Connection[Any], fixes: Sequence[Fix]) -> int:
    return write_batch(conn, fixes, [], mileage=RULE)


async def test_batches_in_order_across_hours_sum_like_the_scan(
    conn: psycopg.Connection[Any], database: str, vehicle: str
) -> None:
    fixes = drive(vehicle, DAY + timedelta(hours=5, minutes=50), 300)  # 50 min, crossing an hour and a gap
    for i in range(0, len(fixes), 37):
        assert write(conn, fixes[i : i + 37]) == len(fixes[i : i + 37])
    fast, scan = await reports(database, vehicle)
    assert_same(fast, scan)
    assert fast[0][4] > 1.0 and fast[0][5] > 0


async def test_a_batch_written_twice_or_overlapping_stores_and_counts_nothing_twice(
    conn: psycopg.Connection[Any], database: str, vehicle: str
) -> None:
    fixes = drive(vehicle, DAY + timedelta(hours=8), 200)
    assert write(conn, fixes[:120]) == 120
    assert write(conn, fixes[:120]) == 0  # the whole batch again
    assert write(conn, fixes[100:]) == 80  # overlapping: 20 already stored
    stored = conn.execute("SELECT count(*) FROM fixes WHERE vehicle_id = %s", (vehicle,)).fetchone()
    conn.commit()
    assert stored == (200,)
    fast, scan = await reports(database, vehicle)
    assert_same(fast, scan)
    assert fast[0][7] == 200


async def test_fixes_out_of_order_recompute_their_hour(
    conn: psycopg.Connection[Any], database: str, vehicle: str
) -> None:
    fixes = drive(vehicle, DAY + timedelta(hours=10, minutes=30), 400)
    later, earlier = fixes[200:], fixes[:200]
    write(conn, later)
    write(conn, earlier[1::2])  # backfill arriving after the live fixes, in two halves
    write(conn, earlier[::2])
    fast, scan = await reports(database, vehicle)
    assert_same(fast, scan)


def hours_of(fixes: Sequence[Fix]) -> dict[datetime, tuple[Any, ...]]:
    """Per UTC hour: fixes, first (ts, lon, lat), last (ts, lon, lat, speed), max speed: from the fixes themselves."""
    by_hour: dict[datetime, list[Fix]] = {}
    for f in sorted(fixes, key=lambda f: f.ts):
        by_hour.setdefault(datetime.fromtimestamp(f.ts, UTC).replace(minute=0, second=0, microsecond=0), []).append(f)
    return {
        h: (len(fs), fs[0].ts, fs[0].lon, fs[0].lat, fs[-1].ts, fs[-1].lon, fs[-1].lat, fs[-1].speed_kmh,
            max(f.speed_kmh or 0.0 for f in fs))
        for h, fs in by_hour.items()
    }  # fmt: skip


async def test_each_hour_keeps_its_first_and_last_fix_whatever_the_batches(
    conn: psycopg.Connection[Any], vehicle: str
) -> None:
    """The first and last fix of an hour (what the report bridges hours with),
    checked column by column against the fixes: one fix per batch (the
    single-fix drain: every group of the summary one fix), runs of fixes, and
    a backfill into hours already summarised."""
    fixes = drive(vehicle, DAY + timedelta(hours=20, minutes=45), 240, step_s=20.0)
    fixes[-1] = Fix(vehicle, fixes[-1].ts, fixes[-1].lon, fixes[-1].lat, fixes[-1].ts + 1, None, 90.0)  # no speed
    live, backfill = [f for i, f in enumerate(fixes) if i % 5], [f for i, f in enumerate(fixes) if not i % 5]
    for f in live[:60]:
        write(conn, [f])
    for i in range(60, len(live), 25):
        write(conn, live[i : i + 25])
    write(conn, backfill[::-1])  # late, newest first: every hour it touches is recomputed
    rows = conn.execute(
        "SELECT hour, fixes, extract(epoch FROM first_ts), first_lon, first_lat, extract(epoch FROM last_ts),"
        " last_lon, last_lat, last_speed_kmh, max_speed_kmh FROM fix_hours WHERE vehicle_id = %s ORDER BY hour",
        (vehicle,),
    ).fetchall()
    conn.commit()
    expected = hours_of(fixes)
    assert [r[0] for r in rows] == sorted(expected) and len(rows) >= 3
    for hour, *got in rows:
        want = expected[hour]
        assert got[0] == want[0], hour
        assert [float(v) if v is not None else None for v in got[1:]] == pytest.approx(list(want[1:]), abs=1e-6), hour


async def test_a_recompute_reads_a_chunk_made_after_its_statement_was_prepared(
    conn: psycopg.Connection[Any], database: str, vehicle: str
) -> None:
    """The writer's statements are prepared once per session; the hour
    recomputed from ``fixes`` must still see a chunk created since (the plan
    is invalidated, not frozen with the chunks of the time)."""
    write(conn, drive(vehicle, DAY + timedelta(hours=3), 20))  # prepares the statements
    far = datetime(2019, 3, 7, tzinfo=UTC)  # a chunk no test writes: created by the next batch
    chunks = conn.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'fixes'")
    before = chunks.fetchone()
    fixes = drive(vehicle, far + timedelta(hours=6), 200)
    write(conn, fixes[100:])
    write(conn, fixes[:100])  # earlier fixes of the same hours: recomputed from the new chunk
    after = conn.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'fixes'")
    assert (after.fetchone() or (0,))[0] > (before or (0,))[0]
    conn.commit()
    fast, scan = await reports(database, vehicle, far)
    assert_same(fast, scan)
    assert fast[0][7] == 200


async def test_unusable_fixes_are_left_out(conn: psycopg.Connection[Any], database: str, vehicle: str) -> None:
    good = drive(vehicle, DAY + timedelta(hours=14), 100)
    late = drive(vehicle, DAY + timedelta(hours=14, seconds=5), 50, flags=int(FixFlag.LATE))
    jumps = drive(vehicle, DAY + timedelta(hours=14, seconds=7), 20, flags=int(FixFlag.JUMP))
    drift = drive(vehicle, DAY + timedelta(hours=14, seconds=8), 20, flags=int(FixFlag.DRIFT))
    write(conn, good + late + jumps + drift)
    fast, scan = await reports(database, vehicle)
    assert_same(fast, scan)
    assert fast[0][7] == 150  # late fixes are where the vehicle was; jumps and parked drift are not


async def test_fixes_loaded_around_the_writer_are_summarised_by_rebuild(
    conn: psycopg.Connection[Any], database: str, vehicle: str
) -> None:
    fixes = drive(vehicle, DAY + timedelta(hours=18, minutes=40), 150)
    write(conn, fixes[:50])
    conn.execute("DELETE FROM fix_hours WHERE vehicle_id = %s", (vehicle,))  # as if loaded by COPY
    conn.commit()
    write(conn, fixes[50:])  # the writer alone would now undercount the first hour
    assert rebuild_hours(conn, DAY, DAY + timedelta(days=1), RULE) > 0
    fast, scan = await reports(database, vehicle)
    assert_same(fast, scan)


async def test_flag_corrections_recompute_their_hours_through_the_index(own_database: str) -> None:
    """Corrected fixes (a suspect jump released as a real move) recompute only
    their vehicle-hours, read by the (vehicle_id, ts) index: joined plainly,
    the planner scanned and hashed the whole chunk (3 M rows: 0.55-0.75 s per
    correction batch, the writer's transaction held meanwhile)."""
    from gpsd_server.store.batch import DEFAULT_MILEAGE, FlagCorrection, rehour_sql, utc

    async with await psycopg.AsyncConnection.connect(own_database) as ac:
        await migrate(ac)
    t0 = DAY.timestamp()
    with psycopg.connect(own_database, autocommit=True) as c:
        c.execute(  # 400 vehicles x 1,000 fixes in one chunk
            "INSERT INTO fixes (vehicle_id, ts, received_at, lon, lat, speed_kmh, flags, source)"
            " SELECT 'C' || v, to_timestamp(%s + k * 10), to_timestamp(%s + k * 10), 112.9 + k * 1e-5, 28.2, 30, 0,"
            " 'native' FROM generate_series(1, 400) v, generate_series(0, 999) k",
            (t0, t0),
        )
        c.execute("ANALYZE fixes")
        corrections = [FlagCorrection(f"C{v}", t0 + 5000.0 + k * 10, 0) for v in range(1, 21) for k in range(5)]
        params = {"v": [x.vehicle_id for x in corrections], "t": [utc(x.ts) for x in corrections]}
        c.autocommit = False
        (plan,) = c.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + rehour_sql(DEFAULT_MILEAGE), params
        ).fetchone() or (None,)
        hours = c.execute("SELECT count(*), sum(fixes) FROM fix_hours WHERE vehicle_id LIKE 'C%%'").fetchone()
        c.rollback()
    assert hours == (20, 20 * 360)  # the 20 corrected vehicle-hours, each whole
    top = plan[0]["Plan"]
    assert top["Shared Hit Blocks"] + top.get("Shared Read Blocks", 0) < 1500, "the recompute read the whole chunk"


async def test_the_fixes_statements_cost_in_proportion_whatever_the_plan_was_made_for(own_database: str) -> None:
    """The writer prepares its statements once per session, planned on its
    first batch (see the alerts' twin in test_batch.py, where a plan made
    for three rows handled 22.5 M rows on a round of 4,000). Planned on a
    batch of three fixes and run on a single-fix batch of 4,000 vehicles over
    200,000 stored fixes and their hours, each fixes statement handles rows
    in proportion to the batch."""
    async with await psycopg.AsyncConnection.connect(own_database) as ac:
        await migrate(ac)
    t0 = DAY.timestamp()
    with psycopg.connect(own_database) as w:
        w.execute(STAGE_SQL)
        w.commit()
        stored = [f for v in range(4000) for f in drive(f"P{v:04d}", DAY, 50)]
        write_batch(w, stored, [], mileage=RULE)  # 200,000 fixes and their hours, stored before
        w.execute("ANALYZE fixes")
        w.execute("ANALYZE fix_hours")
        w.commit()
    # A session of its own: psycopg deallocates every prepared statement of a
    # session whose own prepared statements a rollback may have undone.
    with psycopg.connect(own_database) as c:
        c.execute(STAGE_SQL)
        c.commit()
        names = {"move": _MOVE_SQL, "last": _LAST_SQL, "hours": hours_sql("fixes_stage", RULE)}
        for name, sql in names.items():
            c.execute(f"PREPARE {name} AS {sql}")

        def stage(n: int, at: float) -> None:
            with c.cursor() as cur:
                copy_fixes_stage(cur, [Fix(f"P{v:04d}", at, 112.4, 28.5, at + 1, 30.0, 90.0) for v in range(n)])

        stage(3, t0 + 940)
        for name in names:  # planned for three fixes
            c.execute(f"EXECUTE {name}")
        c.rollback()
        stage(4000, t0 + 950)  # one more fix of each vehicle, after its last, in the hour it has
        for name in names:
            (plan,) = c.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}").fetchone() or (None,)
            handled = rows_handled(plan[0]["Plan"])
            assert handled < 40 * 4000, (name, handled)
        c.rollback()


async def test_sensors_and_alert_details_are_stored_as_the_documents_they_were(
    conn: psycopg.Connection[Any], vehicle: str
) -> None:
    """Both go through the COPY as jsonb's binary format (a version byte and
    the JSON text, dumped as bytes): PostgreSQL must read the same documents,
    non-ASCII names and nested values included."""
    t0 = DAY.timestamp() + 3 * 3600
    kinds = [
        Sensors(loaded=True, cover_closed=False),
        Sensors(drum="ccw", lift=True),
        Sensors(),  # nothing known: no document
        None,
    ]
    fixes = [Fix(vehicle, t0 + i, 112.3, 28.5, t0 + i + 1, 30.0, 90.0, sensors=s) for i, s in enumerate(kinds)]
    details = {"name": '岳麓区·禁行区 "A"\\1', "duration_s": 42, "limits": [1.5, None, {"深": True}]}
    start = Event("forbidden_zone", "start", vehicle, t0, 112.3, 28.5, "forbidden:Z9", zone_id="Z9", details=details)
    end = Event("forbidden_zone", "end", vehicle, t0 + 3, 112.3, 28.5, "forbidden:Z9", zone_id="Z9",
                details={"duration_s": 3, "name": "ignored: the start's stays"})  # fmt: skip
    instant = Event("sos", "instant", vehicle, t0 + 2, 112.3, 28.5, "sos", "critical", details={"说明": "紧急"})
    alerts = [AlertRow(str(uuid.uuid4()), e, t0 + 9) for e in (start, instant, end)]
    alerts[2] = AlertRow(alerts[0].id, end, t0 + 9)
    write_batch(conn, fixes, alerts, mileage=RULE)
    conn.commit()
    stored = conn.execute("SELECT sensors FROM fixes WHERE vehicle_id = %s ORDER BY ts", (vehicle,)).fetchall()
    expected = [{"loaded": True, "cover_closed": False}, {"drum": "ccw", "lift": True}, None, None]
    assert [s for (s,) in stored] == expected
    (last,) = conn.execute("SELECT last_sensors FROM vehicles WHERE id = %s", (vehicle,)).fetchone() or (0,)
    assert last is None  # the last fix said nothing about its body
    got = dict(conn.execute("SELECT kind, details FROM alerts WHERE vehicle_id = %s", (vehicle,)).fetchall())
    assert got == {"forbidden_zone": {**details, "duration_s": 42}, "sos": {"说明": "紧急"}}
    conn.commit()
