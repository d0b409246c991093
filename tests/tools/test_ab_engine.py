"""tools/ab_engine.py pairs two engines batch by batch and compares their events."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_paired_engine_benchmark_runs_against_itself_with_the_same_events() -> None:
    out = subprocess.run(
        [sys.executable, "tools/ab_engine.py", "--against", "self", "--vehicles", "200", "--batches", "4",
         "--zones", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    figures = re.search(r"\(gpsd_server\) ([\d.]+) µs, this checkout ([\d.]+) µs, new / old ([\d.]+)", out.stdout)
    assert figures is not None, out.stdout
    old, new, ratio = map(float, figures.groups())
    assert old > 0 and new > 0 and abs(ratio - new / old) < 0.01
    assert "events: the same" in out.stdout
    assert "20,000 fixes" in out.stdout  # 4 batches of 100 messages of 50 fixes
