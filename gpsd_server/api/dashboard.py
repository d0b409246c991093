"""``GET /api/dashboard``: the supervisor's statistics (统计) at a glance, all
counted by the database (``store/dashboard.py``): the fleet now by class and
status, the desk now, a local day's violations by kind, severity and company,
the top offending vehicles and companies, and a 7-day trend ending that day."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.history_params import local_day
from gpsd_server.api.params import day_query
from gpsd_server.api.responses import json_response
from gpsd_server.store import dashboard as store

TREND_DAYS = 7
TOP = 10


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["reports"])
    tzname = services.config.city.timezone
    rules = services.config.rules

    @r.get("/api/dashboard")
    async def dashboard(
        who: Principal = Depends(require("viewer", company="own")),
        day: str | None = day_query("local date YYYY-MM-DD; default today"),
    ) -> Response:
        """Counts now and for one local day (default today), top offenders, 7-day trend."""
        today = datetime.now(ZoneInfo(tzname)).date().isoformat()
        d, _, t1 = local_day(day or today, tzname)
        trend_start = local_day((d - timedelta(days=TREND_DAYS - 1)).isoformat(), tzname)[1]
        now = datetime.now(UTC)
        scope = who.scope  # a company account: its own vehicles only
        async with services.db.connection() as conn:
            fleet = await store.fleet_now(
                conn, now, moving_kmh=rules.moving_kmh, offline_s=rules.offline_s, scope=scope
            )
            desk = await store.desk_now(conn, scope=scope)
            rows = await store.violations_by(conn, trend_start, t1, tzname, scope=scope)
        by_class: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        for cls, st, n in fleet:
            by_class[cls] += n
            by_status[st] += n
        day_text = d.isoformat()
        kinds: Counter[str] = Counter()
        severities: Counter[str] = Counter()
        companies: Counter[str] = Counter()
        vehicles: Counter[str] = Counter()
        vehicle_info: dict[str, tuple[str | None, str | None]] = {}
        trend: dict[str, Counter[str]] = defaultdict(Counter)
        for row_day, kind, severity, vid, plate, comp, n in rows:
            trend[row_day][severity] += n
            if row_day != day_text:
                continue
            kinds[kind] += n
            severities[severity] += n
            companies[comp or ""] += n
            vehicles[vid] += n
            vehicle_info[vid] = (plate, comp)
        days = [(d - timedelta(days=i)).isoformat() for i in range(TREND_DAYS - 1, -1, -1)]
        body: dict[str, Any] = {
            "day": day_text,
            "timezone": tzname,
            "generated_at": now,
            "now": {
                "vehicles": sum(by_class.values()),
                "by_class": dict(sorted(by_class.items())),
                "by_status": {s: by_status.get(s, 0) for s in ("moving", "stopped", "offline", "no_fix")},
                "alerts_open": desk["open"],
                "alerts_acked": desk["acked"],
                "vehicles_in_violation": desk["vehicles_in_violation"],
            },
            "violations": {
                "total": sum(kinds.values()),
                "by_kind": dict(kinds.most_common()),
                "by_severity": {s: severities.get(s, 0) for s in ("critical", "warning")},
                "by_company": dict(companies.most_common()),
            },
            "top_vehicles": [
                {"vehicle_id": v, "plate": vehicle_info[v][0], "company": vehicle_info[v][1], "count": n}
                for v, n in sorted(vehicles.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
            ],
            "top_companies": [
                {"company": c or None, "count": n}
                for c, n in sorted(companies.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
            ],
            "trend": [
                {
                    "day": x,
                    "critical": trend[x]["critical"],
                    "warning": trend[x]["warning"],
                    "total": trend[x]["critical"] + trend[x]["warning"],
                }
                for x in days
            ],
        }
        return json_response(body)

    return r
