"""tools/bench_e2e.py, the instrument of issue 15, runs end to end on a small
city (private PostgreSQL and Mosquitto of its own, ~15 s) and its table counts
what the drains did: every fix of each drain stored, and the websocket client's
positions those of the drain only (not the warm-up's, not the snapshot of the
restored vehicles it gets at connect)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.fixtures.services import REPO


def _row(out: str, case: str) -> list[str]:
    line = next((x for x in out.splitlines() if x.startswith(f"| {case} ")), None)
    assert line is not None, f"no row for {case}:\n{out}"
    return [c.strip() for c in line.strip("|").split("|")]


def _n(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_the_end_to_end_benchmark_runs_and_counts_the_drains_only() -> None:
    args = ["--cases", "single,batched", "--fixes", "2000", "--batched-fixes", "10000", "--vehicles", "200",
            "--zones", "50", "--routes", "5"]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "tools/bench_e2e.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "single-fix drain after a warm-up" in out
    assert "warm-up: one fix for each of 200 vehicles" in run.stderr
    single, batched = _row(out, "single-fix"), _row(out, "batched x50")
    # 1 % of the single-fix messages are malformed on purpose.
    assert (_n(single[1]), _n(single[2])) == (2000, 1980)
    assert (_n(batched[1]), _n(batched[2])) == (200, 10_000)
    for row in (single, batched):
        rate, cpu, positions = float(row[4].replace(",", "")), row[5], _n(row[10])
        assert rate > 0
        total = re.search(r"\*\*([0-9.]+)\*\*", cpu)
        assert total is not None and float(total.group(1)) > 0, cpu
        # Conflation may send fewer to a slow client, never more than the drain's fixes.
        assert 0 < positions <= _n(row[2]), row
