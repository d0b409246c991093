"""Compare the simulator's ground truth with the alerts the server raised.

  python tools/truth_compare.py --truth truth.jsonl --dsn postgresql://postgres@127.0.0.1:55432/gpsd
  python tools/truth_compare.py --truth truth.jsonl --alerts alerts.jsonl [--tolerance 180] [--strict]

Alerts come from the ``alerts`` table (kind, vehicle_id, ts, ended_ts) or a
JSON lines file with the same fields. A truth line is found when an alert of
a mapped kind for the same vehicle overlaps [start - tolerance, end +
tolerance]; an alert is explained when it matches some truth line. Prints
recall per violation kind, precision per alert kind, and the unexplained
alerts. ``--strict`` exits 1 unless recall is 100 % and nothing is unexplained.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# Simulator violation kind -> alert kinds of the server that count as finding it.
# Edit here when the rule engine names things differently.
ALERT_KINDS: dict[str, tuple[str, ...]] = {
    "route_deviation": ("route_deviation",),
    "forbidden_zone": ("forbidden_zone",),
    "overspeed": ("overspeed",),
    "curfew": ("curfew",),
    "illegal_dumping": ("illegal_dumping",),  # loaded stop >= 5 min outside sites
    "body_lift": ("illegal_dumping", "body_lift"),
    "drum_ccw": ("illegal_dumping", "drum_ccw", "illegal_unloading"),
    "uncovered_load": ("uncovered_load",),
    "offline": ("offline",),
    "power_cut": ("power_cut", "terminal_alarm", "tampering"),
    # Rejected or stored quietly by ingest, never alerts: not scored here.
    "duplicate": (),
    "late": (),
    "malformed": (),
}
# Alerts that normal driving raises by design (not violations): never "unexplained".
# Presence records (zone enter/exit) are facts, not violations.
IGNORED_ALERT_KINDS: frozenset[str] = frozenset({"zone", "zone_enter", "zone_exit", "online"})
DEFAULT_TOLERANCE_S = 180.0  # rule minimum durations (60 s deviation, 5 min dumping is inside the window) + report gaps


@dataclass(frozen=True)
class Interval:
    vehicle_id: str
    kind: str
    start: float
    end: float
    raw: str = ""


def ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e10 else 1.0)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def read_truth(path: Path) -> tuple[list[Interval], tuple[float, float] | None]:
    truth, run = [], None
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if obj["kind"] == "_run":
            run = (ts(obj["start"]), ts(obj["end"]) if obj.get("end") else float("inf"))
        elif obj["kind"] == "_run_end" and run is not None:
            run = (run[0], ts(obj["end"]))
        elif not obj["kind"].startswith("_"):
            truth.append(Interval(obj["vehicle_id"], obj["kind"], ts(obj["start"]), ts(obj["end"]), line))
    return truth, run


def alert_interval(obj: dict[str, Any]) -> Interval:
    start = ts(obj["ts"])
    end = ts(obj["ended_ts"]) if obj.get("ended_ts") else start
    return Interval(
        str(obj["vehicle_id"]), str(obj["kind"]), start, end, json.dumps(obj, default=str, ensure_ascii=False)
    )


def read_alerts_file(path: Path) -> list[Interval]:
    return [alert_interval(json.loads(x)) for x in path.read_text("utf-8").splitlines() if x.strip()]


def read_alerts_db(dsn: str, run: tuple[float, float] | None) -> list[Interval]:
    import psycopg

    query = "SELECT kind, vehicle_id, ts, ended_ts FROM alerts"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query).fetchall()
    return [alert_interval({"kind": k, "vehicle_id": v, "ts": t, "ended_ts": e}) for k, v, t, e in rows]


def in_run(alert: Interval, run: tuple[float, float] | None, interval_s: float = 10.0) -> bool:
    """Alerts of this run only; and not the offline every vehicle gets when the simulator stops."""
    if run is None:
        return True
    if not run[0] - 1 <= alert.start <= run[1] + 1:
        return False
    return not (alert.kind == "offline" and alert.start >= run[1] - 3 * interval_s)


def overlaps(t: Interval, a: Interval, tolerance: float) -> bool:
    return (
        a.vehicle_id == t.vehicle_id
        and a.kind in ALERT_KINDS.get(t.kind, ())
        and (a.start <= t.end + tolerance and a.end >= t.start - tolerance)
    )


@dataclass
class Report:
    recall: dict[str, tuple[int, int]]  # truth kind -> (found, total)
    precision: dict[str, tuple[int, int]]  # alert kind -> (explained, total)
    missed: list[Interval]
    unexplained: list[Interval]

    @property
    def perfect(self) -> bool:
        return not self.missed and not self.unexplained


def compare(truth: list[Interval], alerts: list[Interval], tolerance: float = DEFAULT_TOLERANCE_S) -> Report:
    scored = [t for t in truth if ALERT_KINDS.get(t.kind)]
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed = []
    for t in scored:
        hit = any(overlaps(t, a, tolerance) for a in alerts)
        found[t.kind][0] += hit
        found[t.kind][1] += 1
        if not hit:
            missed.append(t)
    explained: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    unexplained = []
    for a in alerts:
        if a.kind in IGNORED_ALERT_KINDS:
            continue
        ok = any(overlaps(t, a, tolerance) for t in scored)
        explained[a.kind][0] += ok
        explained[a.kind][1] += 1
        if not ok:
            unexplained.append(a)
    return Report(
        {k: (v[0], v[1]) for k, v in found.items()},
        {k: (v[0], v[1]) for k, v in explained.items()},
        missed,
        unexplained,
    )


def pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:6.1f}%" if d else "     -"


def render(report: Report) -> str:
    lines = ["recall per violation kind", f"  {'kind':<18}{'found':>7}{'total':>7}{'recall':>9}"]
    for kind, (n, d) in sorted(report.recall.items()):
        lines.append(f"  {kind:<18}{n:>7}{d:>7}{pct(n, d):>9}")
    lines += ["precision per alert kind", f"  {'kind':<18}{'explained':>10}{'total':>7}{'precision':>10}"]
    for kind, (n, d) in sorted(report.precision.items()):
        lines.append(f"  {kind:<18}{n:>10}{d:>7}{pct(n, d):>10}")
    total_found = sum(n for n, _ in report.recall.values())
    total_truth = sum(d for _, d in report.recall.values())
    total_expl = sum(n for n, _ in report.precision.values())
    total_alerts = sum(d for _, d in report.precision.values())
    lines.append(
        f"overall: recall {pct(total_found, total_truth).strip()}, precision {pct(total_expl, total_alerts).strip()}"
    )
    lines += ["missed violations:"] + [f"  {t.raw}" for t in report.missed] if report.missed else []
    lines += ["unexplained alerts:"] + [f"  {a.raw}" for a in report.unexplained] if report.unexplained else []
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Recall and precision of the server's alerts against the simulator's ground truth."
    )
    ap.add_argument("--truth", type=Path, required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dsn", help="PostgreSQL DSN of the server's database (table alerts)")
    src.add_argument("--alerts", type=Path, help="JSON lines of alerts: kind, vehicle_id, ts, ended_ts")
    ap.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S, help="seconds either side of a violation")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless recall is 100%% and no alert is unexplained")
    args = ap.parse_args(argv)
    truth, run = read_truth(args.truth)
    alerts = read_alerts_db(args.dsn, run) if args.dsn else read_alerts_file(args.alerts)
    alerts = [a for a in alerts if in_run(a, run)]
    report = compare(truth, alerts, args.tolerance)
    print(render(report))
    return 1 if args.strict and not report.perfect else 0


if __name__ == "__main__":
    sys.exit(main())
