"""tools/truth_compare.py: matching, recall, precision, unexplained alerts, the end-of-run offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools import truth_compare as tc

RUN = {"kind": "_run", "vehicle_id": "", "start": "2025-06-02T10:00:00+08:00", "end": "2025-06-02T10:15:00+08:00"}


def truth_line(vid: str, kind: str, start: str, end: str) -> dict[str, str]:
    return {"vehicle_id": vid, "kind": kind, "start": f"2025-06-02T{start}+08:00", "end": f"2025-06-02T{end}+08:00"}


def alert(vid: str, kind: str, ts: str, ended: str | None = None) -> dict[str, str | None]:
    return {"vehicle_id": vid, "kind": kind, "ts": f"2025-06-02T{ts}+08:00",
            "ended_ts": f"2025-06-02T{ended}+08:00" if ended else None}  # fmt: skip


def write(path: Path, lines: list[dict[str, str | None]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    return path


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    return write(tmp_path / "truth.jsonl", [
        RUN,
        truth_line("MT-001", "route_deviation", "10:02:00", "10:04:00"),
        truth_line("MT-002", "body_lift", "10:03:00", "10:04:30"),
        truth_line("MT-003", "overspeed", "10:05:00", "10:06:00"),
        truth_line("MX-001", "malformed", "10:01:00", "10:01:00"),
    ])  # fmt: skip


def test_perfect_run(truth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = write(tmp_path / "alerts.jsonl", [
        alert("MT-001", "route_deviation", "10:03:00", "10:04:10"),
        alert("MT-002", "illegal_dumping", "10:03:10"),  # body lift reported as suspected dumping
        alert("MT-003", "overspeed", "10:05:30", "10:06:00"),
        alert("MT-003", "overspeed", "10:05:50"),  # a split alert is still explained
        alert("MT-009", "offline", "10:14:50"),  # every vehicle goes offline when the simulator stops
        alert("PC-001", "zone_enter", "10:07:00"),
    ])  # fmt: skip
    assert tc.main(["--truth", str(truth), "--alerts", str(alerts), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "overall: recall 100.0%, precision 100.0%" in out


def test_missed_and_unexplained(truth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = write(tmp_path / "alerts.jsonl", [
        alert("MT-001", "route_deviation", "10:09:00"),  # too late: beyond the tolerance
        alert("MT-002", "illegal_dumping", "10:03:10"),
        alert("MT-003", "curfew", "10:05:30"),  # right vehicle and time, wrong kind
    ])  # fmt: skip
    assert tc.main(["--truth", str(truth), "--alerts", str(alerts), "--strict"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"route_deviation\s+0\s+1\s+0\.0%", out)
    assert "unexplained alerts:" in out and '"curfew"' in out and "10:09:00" in out


def test_compare_counts() -> None:
    t = [tc.Interval("A", "overspeed", 100.0, 200.0), tc.Interval("B", "overspeed", 100.0, 200.0)]
    a = [tc.Interval("A", "overspeed", 150.0, 150.0), tc.Interval("C", "overspeed", 150.0, 150.0)]
    report = tc.compare(t, a, tolerance=10)
    assert report.recall == {"overspeed": (1, 2)} and report.precision == {"overspeed": (1, 2)}
    assert [m.vehicle_id for m in report.missed] == ["B"] and [u.vehicle_id for u in report.unexplained] == ["C"]
