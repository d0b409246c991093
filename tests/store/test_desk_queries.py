"""The desk's queries read the alerts people work, not the zone presence
records beside them.

Zone records (one row per visit of a vehicle to a zone) are most of
``alerts`` and never leave the state 'open'; before migration 060 the
dashboard's count of open alerts, the 7-day violation trend and the desk's
list read every one of them (233 / 147 / 22-43 ms with 2 M zone records,
growing with every day kept). Each query here runs once as EXPLAIN (ANALYZE,
BUFFERS) next to its real run, over 200,000 zone records and 300 real alerts,
and must stay within a budget that the real alerts fit in and a walk over
the zone records does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gpsd_server.core.cases import ALERT_KINDS
from gpsd_server.store import alerts, cases, dashboard, history
from gpsd_server.store.schema import migrate

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
ZONE_RECORDS = 200_000
# Buffers per query: the real alerts and their vehicles' look-ups take 6-606
# here; a query that walks the zone records reads 3,400-4,000 (measured
# without migration 060).
BUDGET = 1500


class Explaining:
    """The connection, but every query is also run as EXPLAIN (ANALYZE, BUFFERS) and its plan kept."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self.plans: list[tuple[str, dict[str, Any]]] = []

    async def _explain(self, query: Any, params: Any) -> None:
        text = query.decode() if isinstance(query, bytes) else str(query)
        cur = await self._conn.execute(("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text).encode(), params)
        row = await cur.fetchone()
        assert row is not None
        self.plans.append((text, row[0][0]["Plan"]))

    async def execute(self, query: Any, params: Any = None) -> Any:
        await self._explain(query, params)
        return await self._conn.execute(query, params)

    def cursor(self, **kw: Any) -> Any:
        outer, real = self, self._conn.cursor(**kw)

        class Cursor:
            async def __aenter__(self) -> Cursor:
                await real.__aenter__()
                return self

            async def __aexit__(self, *exc: Any) -> None:
                await real.__aexit__(*exc)

            async def execute(self, query: Any, params: Any = None) -> Any:
                await outer._explain(query, params)
                return await real.execute(query, params)

            async def fetchall(self) -> Any:
                return await real.fetchall()

        return Cursor()


def blocks(plan: dict[str, Any]) -> int:
    return int(plan["Shared Hit Blocks"]) + int(plan.get("Shared Read Blocks", 0))


@pytest.fixture
async def desk(own_database: str) -> Any:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await migrate(conn)
        t0 = NOW - timedelta(hours=20)
        await conn.execute(  # a fleet's visits to zones over 20 hours: open forever, nobody works them
            "INSERT INTO alerts (id, vehicle_id, kind, key, severity, zone_id, ts, raised_at, ended_ts, ended_at)"
            " SELECT gen_random_uuid(), 'V' || (g %% 5000), 'zone', 'zone:Z' || g, 'info', 'Z' || (g %% 900),"
            " t, t, t + interval '4 min', t + interval '4 min'"
            " FROM generate_series(1, %s) g, LATERAL (SELECT %s + g * interval '360 ms' AS t) x",
            (ZONE_RECORDS, t0),
        )
        await conn.execute(  # the visits going on now
            "UPDATE alerts SET ended_ts = NULL, ended_at = NULL WHERE kind = 'zone' AND ts > %s",
            (NOW - timedelta(minutes=20),),
        )
        kinds = sorted(ALERT_KINDS)
        await conn.execute(  # 300 violations and case alerts: a third of each state
            "INSERT INTO alerts (id, vehicle_id, kind, key, severity, ts, raised_at, state, details)"
            " SELECT gen_random_uuid(), 'V' || g, k, k || ':' || g, 'warning', t, t,"
            " (ARRAY['open', 'acked', 'closed'])[g %% 3 + 1], jsonb_build_object('case_id', g, 'step', 'x')"
            " FROM generate_series(1, 300) g, LATERAL (SELECT CASE WHEN g %% 10 = 0 THEN %s ELSE 'overspeed' END AS k,"
            " %s + g * interval '4 min' AS t) x",
            (kinds[0], t0),
        )
        await conn.execute("VACUUM ANALYZE alerts")
        yield conn


Query = Callable[[Any], Awaitable[Any]]
QUERIES: dict[str, Query] = {
    "dashboard: open and acked now": lambda c: dashboard.desk_now(c, scope=None),
    "dashboard: 7-day violation trend": lambda c: dashboard.violations_by(
        c, NOW - timedelta(days=7), NOW, "Asia/Shanghai", scope=None
    ),
    "report: violations of a day": lambda c: history.violations(c, NOW - timedelta(days=1), NOW, "Asia/Shanghai"),
    "desk: active alerts": lambda c: alerts.list_alerts(c, state="active"),
    "desk: all alerts": lambda c: alerts.list_alerts(c, state="all"),
    "cases: open overdue alerts": lambda c: cases.overdue_alerts(c, open_only=True),
}


@pytest.mark.parametrize("name", list(QUERIES))
async def test_desk_queries_do_not_read_the_zone_records(desk: psycopg.AsyncConnection[Any], name: str) -> None:
    conn = Explaining(desk)
    result = await QUERIES[name](conn)
    assert result, "the query found nothing: the test data is wrong"
    assert conn.plans
    for text, plan in conn.plans:
        assert blocks(plan) < BUDGET, f"{name} read {blocks(plan)} buffers: {text[:120]}"


async def test_the_counts_leave_zone_records_out(desk: psycopg.AsyncConnection[Any]) -> None:
    now = await dashboard.desk_now(desk, scope=None)
    assert (now["open"], now["acked"]) == (100, 100)
    listed = await alerts.list_alerts(desk, state="active", limit=1000)
    assert len(listed) == 200 and all(a.kind != "zone" for a in listed)
