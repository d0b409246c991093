"""Alerts written through the staging table: applied in the order the engine
raised them, idempotent when a batch is written twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from gpsd_server.model import Event, Phase
from gpsd_server.store.batch import (
    _ALERT_END,
    _ALERT_INSERT,
    _CLOSE_CARRIED,
    _NUMBER_ALERTS,
    STAGE_SQL,
    AlertRow,
    alert_stage_rows,
    copy_alert_stage,
    jsonb_binary,
    number_left_over_alerts,
    write_batch,
)
from gpsd_server.store.schema import migrate
from tests.store.plans import rows_handled, seq_scans

T0 = 1.7e9


def row(phase: Phase, ts: float, key: str = "zone:Z1", vehicle: str = "V1", alert_id: str | None = None) -> AlertRow:
    e = Event("zone", phase, vehicle, ts, 112.3, 28.5, key, "info", zone_id="Z1", details={"at": ts})
    return AlertRow(alert_id or str(uuid.uuid4()), e, ts + 1)


@pytest.fixture
async def conn(database: str) -> AsyncIterator[psycopg.Connection[Any]]:
    async with await psycopg.AsyncConnection.connect(database) as c:
        await migrate(c)
    with psycopg.connect(database) as c:
        c.execute("DELETE FROM alerts")
        c.execute(STAGE_SQL)
        c.commit()
        yield c


def copy_stage(c: psycopg.Connection[Any], stage: list[tuple[Any, ...]]) -> None:
    with c.cursor() as cur:
        copy_alert_stage(cur, stage)


def alerts(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT extract(epoch FROM ts), extract(epoch FROM ended_ts), details FROM alerts ORDER BY ts"
    ).fetchall()
    conn.commit()
    return [(float(ts), None if end is None else float(end), details) for ts, end, details in rows]


def test_rounds_hold_one_event_per_alert_key() -> None:
    batch = [row("start", T0), row("start", T0, key="k2"), row("end", T0 + 10), row("start", T0 + 20)]
    rows, rounds = alert_stage_rows(batch)
    assert [(r[0], r[1], r[2]) for r in rows] == [(0, 0, False), (1, 0, False), (2, 1, True), (3, 2, False)]
    assert rounds == [[2, 0, 0], [0, 1, 0], [1, 0, 0]]


def test_a_start_ended_in_the_same_batch_is_staged_as_the_whole_interval() -> None:
    start = row("start", T0)
    rows, rounds = alert_stage_rows([start, row("end", T0 + 10, alert_id=start.id), row("start", T0 + 20)])
    # The start carries its end (merged); the end has no row of its own; the next start is round 1.
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(0, 0, False, True), (2, 1, False, False)]
    assert rounds == [[1, 0, 1], [1, 0, 0]]
    # ended_ts; the start's figures stay, the end's own keys are added
    assert rows[0][4 + 11] is not None and rows[0][4 + 13] == jsonb_binary({"at": T0})
    assert rows[1][4 + 11] is None


def test_a_replay_cut_into_other_batches_still_closes_the_alert(conn: psycopg.Connection[Any]) -> None:
    start = row("start", T0)
    write_batch(conn, [], [start])  # stored open by an earlier write
    write_batch(conn, [], [start, row("end", T0 + 10, alert_id=start.id)])  # replayed with its end
    assert [(ts - T0, None if end is None else end - T0) for ts, end, _ in alerts(conn)] == [(0.0, 10.0)]


def test_leave_and_reenter_within_one_batch(conn: psycopg.Connection[Any]) -> None:
    first = row("start", T0)
    write_batch(conn, [], [first])
    # One batch: the first visit ends, a second starts, ends, and a third starts.
    second = row("start", T0 + 20)
    batch = [row("end", T0 + 10, alert_id=first.id), second, row("end", T0 + 30, alert_id=second.id)]
    batch.append(row("start", T0 + 40))
    write_batch(conn, [], batch)
    got = alerts(conn)
    assert [(ts - T0, None if end is None else end - T0) for ts, end, _ in got] == [
        (0.0, 10.0),
        (20.0, 30.0),
        (40.0, None),
    ]
    assert got[0][2] == {"at": T0}  # the end adds its figures to the start's details, never overwrites one


def test_batch_written_twice_stores_alerts_once(conn: psycopg.Connection[Any]) -> None:
    start = row("start", T0)
    batch = [start, row("end", T0 + 10, alert_id=start.id), row("start", T0 + 20), row("instant", T0 + 25, key="sos")]
    write_batch(conn, [], batch)
    before = alerts(conn)
    write_batch(conn, [], batch)
    assert alerts(conn) == before
    assert len(before) == 3


def test_end_without_a_stored_start_records_the_interval(conn: psycopg.Connection[Any]) -> None:
    end = row("end", T0 + 60)
    end.event.details["started_at"] = T0  # what every rule's end event carries
    write_batch(conn, [], [end])
    got = alerts(conn)
    assert [(ts - T0, None if e is None else e - T0) for ts, e, _ in got] == [(0.0, 60.0)]


def test_numbers_go_past_9999_alerts_a_day(conn: psycopg.Connection[Any]) -> None:
    """The 10,000th alert of a day is -10000, not -1000 again (a unique violation
    that used to stop the writer, and with it the server, for the rest of the day)."""
    first = [AlertRow(str(uuid.uuid4()), Event("sos", "instant", "V1", T0, 112.3, 28.5, "sos", "critical"), T0)]
    write_batch(conn, [], first)
    (number,) = conn.execute("SELECT number FROM alerts").fetchone() or ("",)
    day = number.split("-")[0]
    conn.execute("UPDATE alert_counters SET last = 998 WHERE day = to_date(%s, 'YYYYMMDD')", (day,))
    conn.commit()
    for k in range(3):  # 999, then 1000
        e = Event("sos", "instant", f"V{k + 2}", T0 + k, 112.3, 28.5, "sos", "critical")
        write_batch(conn, [], [AlertRow(str(uuid.uuid4()), e, T0 + k)])
    conn.execute("UPDATE alert_counters SET last = 9998 WHERE day = to_date(%s, 'YYYYMMDD')", (day,))
    conn.commit()
    batch = [
        AlertRow(str(uuid.uuid4()), Event("sos", "instant", f"W{k}", T0 + 10 + k, 112.3, 28.5, "sos", "critical"), T0)
        for k in range(3)
    ]
    write_batch(conn, [], batch)  # 9999, 10000, 10001 in one transaction
    numbers = [n for (n,) in conn.execute("SELECT number FROM alerts ORDER BY ts").fetchall()]
    conn.commit()
    # (the first one's depends on what other tests numbered that day)
    assert [n.split("-")[1] for n in numbers[1:]] == ["0999", "1000", "1001", "9999", "10000", "10001"]


def test_numbers_come_with_the_insert_gap_free_across_rounds_and_once(conn: psycopg.Connection[Any]) -> None:
    """The desk's alerts are numbered by the insert itself, round after round
    (a vehicle overspeeding twice within one batch is two rounds), one number
    each, none skipped; zone records get none; writing the batch again (a
    redelivery) hands out no number."""
    day = "2023-11-15"  # T0's local day: no other test numbers alerts of it
    conn.execute("DELETE FROM alert_counters WHERE day = %s", (day,))
    conn.commit()

    def ev(phase: Phase, vehicle: str, ts: float, kind: str = "overspeed") -> AlertRow:
        e = Event(kind, phase, vehicle, ts, 112.3, 28.5, f"{kind}:x", "warning" if kind != "zone" else "info")
        return AlertRow(str(uuid.uuid4()), e, T0)

    first = ev("start", "N1", T0)
    batch = [first, ev("start", "N2", T0 + 1), ev("start", "N3", T0 + 1, "zone"),
             AlertRow(first.id, Event("overspeed", "end", "N1", T0 + 5, 112.3, 28.5, "overspeed:x", "warning"), T0),
             ev("start", "N1", T0 + 9), ev("instant", "N4", T0 + 2, "sos")]  # fmt: skip
    write_batch(conn, [], batch)
    got = conn.execute(
        "SELECT vehicle_id, kind, extract(epoch FROM ts) - %s, number FROM alerts WHERE vehicle_id LIKE 'N%%'"
        " ORDER BY number NULLS LAST", (T0,),
    ).fetchall()  # fmt: skip
    conn.commit()
    numbered = [(v, k, int(t)) for v, k, t, n in got if n]
    assert [n for *_, n in got if n] == [f"20231115-000{i}" for i in range(1, 5)]
    # Round 0 (by raising, fix time, id), then N1's second overspeed in round 1.
    assert numbered[:3] == sorted(numbered[:3], key=lambda x: x[2]) and numbered[3] == ("N1", "overspeed", 9)
    assert [(v, k) for v, k, _, n in got if not n] == [("N3", "zone")]
    write_batch(conn, [], batch)  # again: nothing new, no number spent
    (last,) = conn.execute("SELECT last FROM alert_counters WHERE day = %s", (day,)).fetchone() or (None,)
    total = conn.execute("SELECT count(*) FROM alerts WHERE vehicle_id LIKE 'N%%'").fetchone()
    conn.commit()
    assert last == 4 and total == (5,)  # N1's first overspeed started and ended within the batch: one row


async def test_ending_alerts_looks_up_each_open_alert_whatever_the_statistics(own_database: str) -> None:
    """Ends find their open alert by index, not by walking every open alert:
    with the statistics of ``alerts`` taken while few were open (autoanalyze
    waits for 10 % of the table to change) and 20,000 open now, the planner's
    join of the unanalysed stage walked all of them for each staged end
    (20,000 buffer hits and 70-120 ms per batch, against ~0.5 ms)."""
    async with await psycopg.AsyncConnection.connect(own_database) as ac:
        await migrate(ac)
    with psycopg.connect(own_database, autocommit=True) as c:
        c.execute(  # yesterday's, all ended: the statistics say no alert is open
            "INSERT INTO alerts (id, vehicle_id, kind, key, severity, zone_id, ts, raised_at, ended_ts, ended_at)"
            " SELECT gen_random_uuid(), 'V' || g, 'zone', 'zone:Z1', 'info', 'Z1', t, t, t, t"
            " FROM generate_series(1, 50000) g, LATERAL (SELECT to_timestamp(%s - g) AS t) x",
            (T0,),
        )
        c.execute("ANALYZE alerts")
        c.execute(
            "INSERT INTO alerts (id, vehicle_id, kind, key, severity, zone_id, ts, raised_at)"
            " SELECT gen_random_uuid(), 'V' || g, 'zone', 'zone:Z1', 'info', 'Z1', to_timestamp(%s), now()"
            " FROM generate_series(1, 20000) g",
            (T0,),
        )
        c.autocommit = False
        c.execute(STAGE_SQL)
        ends = [row("end", T0 + 60, vehicle=f"V{k}") for k in range(1, 21)]
        stage, rounds = alert_stage_rows(ends)
        assert rounds == [[0, 20, 0]]
        copy_stage(c, stage)
        (plan,) = c.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _ALERT_END.format(n=0)).fetchone() or (None,)
        closed = c.execute("SELECT count(*) FROM alerts WHERE ended_ts > to_timestamp(%s)", (T0,)).fetchone()
        c.rollback()
        # The same for starts staged with their end whose start a write of an
        # earlier batch stored open (a replay cut into other batches).
        c.execute(STAGE_SQL)
        opened = c.execute(
            "SELECT id::text, vehicle_id FROM alerts WHERE ended_ts IS NULL AND vehicle_id = ANY(%s)",
            ([f"V{k}" for k in range(1, 21)],),
        ).fetchall()  # fmt: skip
        carried = []
        for aid, vid in opened:
            start = AlertRow(aid, Event("zone", "start", vid, T0, 112.3, 28.5, "zone:Z1", "info", zone_id="Z1"), T0)
            end = AlertRow(aid, Event("zone", "end", vid, T0 + 60, 112.3, 28.5, "zone:Z1", "info", zone_id="Z1"), T0)
            carried += [start, end]
        stage, rounds = alert_stage_rows(carried)
        assert rounds == [[20, 0, 20]]
        copy_stage(c, stage)
        c.execute(_ALERT_INSERT.format(n=0, tz="'Asia/Shanghai'"))  # stored already: skipped
        (plan2,) = c.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _CLOSE_CARRIED.format(n=0)).fetchone() or (
            None,
        )
        closed2 = c.execute("SELECT count(*) FROM alerts WHERE ended_ts > to_timestamp(%s)", (T0,)).fetchone()
        c.rollback()
    assert closed == (20,) and closed2 == (20,)
    for p in (plan, plan2):
        top = p[0]["Plan"]
        assert top["Shared Hit Blocks"] + top.get("Shared Read Blocks", 0) < 1000, "the ends walked the open alerts"


async def test_numbering_finds_the_batch_alerts_by_key_whatever_the_table_holds(own_database: str) -> None:
    """A batch numbers its ten alerts without reading the 150,000 stored
    (numbered, or zone records that never get a number), analysed or not,
    with the dead entries numbering leaves in ``alerts_unnumbered`` before a
    vacuum: the statement that numbered "every alert without a number" read
    ~6,500 buffers and took 40-140 ms per batch here."""
    async with await psycopg.AsyncConnection.connect(own_database) as ac:
        await migrate(ac)
    insert = (
        "INSERT INTO alerts (id, vehicle_id, kind, key, severity, ts, raised_at)"
        " SELECT gen_random_uuid(), 'V' || g, %s, %s || g, 'info', t, t"
        " FROM generate_series(1, %s) g, LATERAL (SELECT to_timestamp(%s + g / 100.0) AS t) x"
    )
    with psycopg.connect(own_database, autocommit=True) as c:
        c.execute(insert, ("zone", "zone:Z", 100_000, T0))
        c.execute(insert, ("overspeed", "os:", 50_000, T0))
        c.execute(  # numbered after the fact, as the writer does: dead entries in alerts_unnumbered
            "UPDATE alerts SET number = 'X-' || vehicle_id WHERE kind <> 'zone'"
        )
        c.execute("ANALYZE alerts")
        c.autocommit = False
        c.execute(STAGE_SQL)
        batch = [
            AlertRow(str(uuid.uuid4()), Event("sos", "instant", f"N{k}", T0 + k, 112.3, 28.5, "sos", "critical"), T0)
            for k in range(10)
        ]
        stage, _ = alert_stage_rows(batch)
        copy_stage(c, stage)
        explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
        (at_insert,) = c.execute(explain + _ALERT_INSERT.format(n=0, tz="'Asia/Shanghai'")).fetchone() or (None,)
        numbered = c.execute(
            "SELECT count(*) FROM alerts WHERE vehicle_id LIKE 'N%%' AND number IS NOT NULL"
        ).fetchone()
        (after,) = c.execute(explain + _NUMBER_ALERTS, {"tz": "Asia/Shanghai"}).fetchone() or (None,)
        c.rollback()
    assert numbered == (10,)  # numbered by the insert itself
    for plan in (at_insert, after):
        top = plan[0]["Plan"]
        assert top["Shared Hit Blocks"] + top.get("Shared Read Blocks", 0) < 1000, "numbering read the stored alerts"


def _stage_round(c: psycopg.Connection[Any], n: int) -> list[tuple[Any, ...]]:
    """A round of ``n`` starts (half the desk's, half zone records), a third of
    them ending within the batch, ``n // 3`` ends of starts stored before, staged."""
    batch: list[AlertRow] = []
    for k in range(n):
        kind = "overspeed" if k % 2 else "zone"
        start = AlertRow(str(uuid.uuid4()), Event(kind, "start", f"N{k}", T0 + k, 112.3, 28.5, f"{kind}:x", "warning"),
                         T0)  # fmt: skip
        batch.append(start)
        if k % 3 == 0:  # ended within the batch: staged carrying its end
            batch.append(AlertRow(start.id, Event(kind, "end", f"N{k}", T0 + k + 5, 112.3, 28.5, f"{kind}:x",
                                                  "warning"), T0))  # fmt: skip
        if k % 3 == 1:  # an end whose start is not in the batch
            batch.append(AlertRow(str(uuid.uuid4()), Event(kind, "end", f"M{k}", T0 + k, 112.3, 28.5, f"{kind}:y",
                                                           "warning"), T0))  # fmt: skip
    stage, _ = alert_stage_rows(batch)
    copy_stage(c, stage)
    return stage


async def test_a_round_of_thousands_costs_in_proportion_whatever_the_plan_was_made_for(own_database: str) -> None:
    """The writer's statements are prepared once per session: their plan is
    the one made for the first batch. Made for a handful of rows and run on a
    single-fix batch's round of thousands, the insert joined the staged rows
    with the ranked ones in a nested loop (385 ms per batch; 106-118 µs of
    PostgreSQL per fix in two bench_e2e runs of four). Every statement of a
    round must handle rows in proportion to the round, and find stored alerts
    by index, whatever it was planned for."""
    async with await psycopg.AsyncConnection.connect(own_database) as ac:
        await migrate(ac)
    with psycopg.connect(own_database, autocommit=True) as c:
        c.execute(
            "INSERT INTO alerts (id, vehicle_id, kind, key, severity, zone_id, ts, raised_at, ended_ts, ended_at)"
            " SELECT gen_random_uuid(), 'V' || g, k, k || ':Z1', 'info', 'Z1', t, t, t, t"
            " FROM generate_series(1, 200000) g, LATERAL (SELECT to_timestamp(%s - g) AS t,"
            " CASE WHEN g %% 5 = 0 THEN 'overspeed' ELSE 'zone' END AS k) x",
            (T0,),
        )
        c.execute("ANALYZE alerts")
        c.autocommit = False
        c.execute(STAGE_SQL)
        c.commit()
        tz = "'Asia/Shanghai'"
        names = {"ins": _ALERT_INSERT, "carried": _CLOSE_CARRIED, "ends": _ALERT_END}
        for name, sql in names.items():
            c.execute(f"PREPARE {name} AS {sql.format(n=0, tz=tz)}")
        _stage_round(c, 3)
        for name in names:  # planned for three rows
            c.execute(f"EXECUTE {name}")
        c.rollback()
        stage = _stage_round(c, 3000)
        for name in names:
            (plan,) = c.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}").fetchone() or (None,)
            top = plan[0]["Plan"]
            assert "alerts" not in seq_scans(top), name
            assert rows_handled(top) < 40 * len(stage), (name, rows_handled(top))
        c.rollback()


def test_alerts_stored_without_a_number_get_one_from_the_next_writer_session(conn: psycopg.Connection[Any]) -> None:
    """A batch numbers only what it staged; alerts stored unnumbered (before
    migration 011, or by an older writer) are numbered once per session."""
    conn.execute(
        "INSERT INTO alerts (id, vehicle_id, kind, key, severity, ts, raised_at)"
        " VALUES (gen_random_uuid(), 'OLD1', 'sos', 'sos', 'critical', to_timestamp(%s), to_timestamp(%s)),"
        "        (gen_random_uuid(), 'OLD2', 'zone', 'zone:Z1', 'info', to_timestamp(%s), to_timestamp(%s))",
        (T0, T0, T0, T0),
    )
    conn.commit()
    write_batch(
        conn, [], [AlertRow(str(uuid.uuid4()), Event("sos", "instant", "NEW", T0, 112.3, 28.5, "sos", "critical"), T0)]
    )
    before = dict(conn.execute("SELECT vehicle_id, number FROM alerts").fetchall())
    conn.commit()
    assert before["OLD1"] is None and before["NEW"] is not None  # the batch numbered its own
    assert number_left_over_alerts(conn, "Asia/Shanghai") == 1
    after = dict(conn.execute("SELECT vehicle_id, number FROM alerts").fetchall())
    conn.commit()
    assert after["OLD1"] is not None and after["OLD2"] is None  # zone records never get a number
    assert after["OLD1"] != after["NEW"]
