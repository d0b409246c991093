"""tools/bench_engine.py runs on a small city (it broke once, unnoticed, when
the engine's private API changed under it: it now uses public calls only)."""

from __future__ import annotations

import numpy as np

from tools import bench_engine


def test_the_engine_benchmark_runs_and_reports_every_rate() -> None:
    rng = np.random.default_rng(1)
    city = bench_engine.make_city(rng, 50, 5, 200)
    fleet = bench_engine.Fleet(rng, list(city.vehicles or {}))
    result = bench_engine.bench(city, fleet, rounds=2, sample=100)
    assert result.fixes > 0 and result.engine_rate > 0 and result.geometry_rate > 0 and result.naive_rate > 0
