"""tools/ab_e2e.py runs two servers side by side (this checkout and a git
revision's, here HEAD) on a small city and reports both drains' figures;
both must store every fix (~20 s)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_paired_end_to_end_benchmark_drains_both_servers() -> None:
    run = subprocess.run(
        [sys.executable, "tools/ab_e2e.py", "--against", "HEAD", "--rounds", "1", "--fixes", "2000",
         "--batched-fixes", "10000", "--vehicles", "200", "--zones", "30", "--routes", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "stored A 2,000, B 2,000" in out and "stored A 10,000, B 10,000" in out, out
    for case in ("single", "batched"):
        line = re.search(rf"^- {case}: server CPU per fix A ([\d.]+) µs, B ([\d.]+) µs; B/A server ([\d.]+)", out, re.M)
        assert line is not None, out
        a, b, ratio = map(float, line.groups())
        assert a > 0 and b > 0 and abs(ratio - b / a) < 0.01 * ratio + 1e-9, line.group(0)
    # Server B ran the revision's code from its own folder, not this checkout.
    assert re.search(r"B: HEAD \(imported from .*/rev-[0-9a-f]{10}\)", out), out
