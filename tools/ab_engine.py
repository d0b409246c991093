"""Paired A/B of the engine: this checkout against a git revision, in one process.

Run: .venv/bin/python tools/ab_engine.py [--against REV] [--shape batched|single] [--vehicles N]

This machine's speed drifts by up to 1.5x within minutes (a shared virtual
machine), so two runs of ``tools/bench_engine.py`` a minute apart cannot
separate a 5 % change. Here both engines run in the same process on the same
fixes, batch by batch, their order swapped every batch, each timed with
``time.process_time``: the drift hits both alike and the ratio holds.

The revision's ``gpsd_server`` is extracted with ``git archive`` into a
temporary folder as a package of another name (imports rewritten), so the two
live side by side. The city and the fixes are ``tools/bench_e2e.py``'s
(1,000 square zones, 100 routes, vehicles driving east-north-east at 36 km/h):
``batched`` gives each vehicle messages of 50 fixes, 100 messages per batch;
``single`` one fix per vehicle in turn, 2,000 per batch, as the drains do.
The events of the two engines are compared, kind, phase, vehicle, key and
time: a change meant to be faster must not change what is raised.

Prints CPU µs per fix of each engine and their ratio (new / old); exits 1 if
the events differ. ``--against self`` runs this checkout against itself: the
ratio then shows what the pairing leaves of the machine's noise (0.98-1.02).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import bench_e2e  # noqa: E402  (a sibling script, not a package)


def short_sha(rev: str) -> str:
    """The revision's commit, abbreviated to ten digits."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=10", rev], check=True, capture_output=True, text=True
    ).stdout.strip()


def unpack(sha: str, into: Path) -> None:
    """The commit's ``gpsd_server`` folder, from ``git archive``, under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "gpsd_server"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def extract(rev: str, into: Path) -> str:
    """The revision's gpsd_server as a package named ``gpsd_ab_<sha>`` under ``into``."""
    sha = short_sha(rev)
    name = f"gpsd_ab_{sha}"
    unpack(sha, into)
    (into / "gpsd_server").rename(into / name)
    word = re.compile(r"\bgpsd_server\b")
    for path in (into / name).rglob("*.py"):
        path.write_text(word.sub(name, path.read_text()))
    return name


def setup(package: str, folder: Path, shape: str, vehicles: int, batches: int, now: float) -> tuple[Any, list[Any]]:
    """An engine of ``package`` on the benchmark city and its batches of fixes."""
    city_mod = importlib.import_module(f"{package}.core.city")
    engine_mod = importlib.import_module(f"{package}.core.engine")
    model = importlib.import_module(f"{package}.model")
    city = city_mod.load_city(
        [("bench.geojson", (folder / "bench.geojson").read_text())],
        ("vehicles.json", (folder / "vehicles.json").read_text()),
    )
    sensors = model.Sensors(loaded=True, cover_closed=True)
    t0 = now - 3 * 86400

    def fix(v: int, step: int) -> Any:
        p = bench_e2e.fix_payload(v, t0 + step * 10.0, step)
        return model.Fix(
            f"V{v:05d}", p["ts"], p["lon"], p["lat"], now, p["speed_kmh"], float(p["heading"]), sensors=sensors
        )

    out: list[Any] = []
    if shape == "batched":
        per_batch = 100  # messages of 50 fixes: message m is vehicle m % vehicles, its (m // vehicles)-th
        for b in range(batches):
            chunk = range(b * per_batch, (b + 1) * per_batch)
            out.append([fix(m % vehicles, (m // vehicles) * 50 + j) for m in chunk for j in range(50)])
    else:
        per_batch = 2000
        for b in range(batches):
            out.append([fix(i % vehicles, i // vehicles) for i in range(b * per_batch, (b + 1) * per_batch)])
    return engine_mod.Engine(city=city), out


def _events(result: Any) -> list[tuple[Any, ...]]:
    return [(e.kind, e.phase, e.vehicle_id, e.key, e.ts) for e in result.events]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--against", default="HEAD", help="the git revision to compare with (default HEAD); 'self': this checkout twice"
    )
    ap.add_argument("--shape", choices=("batched", "single"), default="batched")
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=200, help="batches timed (batched: 5,000 fixes each)")
    ap.add_argument("--zones", type=int, default=1000)
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="gpsd-ab-") as tmp:
        folder = Path(tmp)
        bench_e2e.write_city(folder, zones=args.zones, routes=100, vehicles=args.vehicles, seed=1)
        sys.path.insert(0, tmp)
        old_name = "gpsd_server" if args.against == "self" else extract(args.against, folder)
        old, old_batches = setup(old_name, folder, args.shape, args.vehicles, args.batches, now)
        new, new_batches = setup("gpsd_server", folder, args.shape, args.vehicles, args.batches, now)
        from gpsd_server.bringup import GC_THRESHOLDS

        gc.collect()
        gc.freeze()  # as the server does after its restore
        gc.set_threshold(*GC_THRESHOLDS)
        spent = {"old": 0.0, "new": 0.0}
        fixes, differ = 0, 0
        for k, (a, b) in enumerate(zip(old_batches, new_batches, strict=True)):
            runs = [("old", old, a), ("new", new, b)]
            got: dict[str, list[tuple[Any, ...]]] = {}
            for tag, engine, batch in runs if k % 2 == 0 else runs[::-1]:
                c0 = time.process_time()
                result = engine.process(batch, now)
                spent[tag] += time.process_time() - c0
                got[tag] = _events(result)
            differ += got["old"] != got["new"]
            fixes += len(a)
    old_us, new_us = spent["old"] / fixes * 1e6, spent["new"] / fixes * 1e6
    print(
        f"{args.shape}: {fixes:,} fixes, {args.vehicles:,} vehicles, {args.zones:,} zones; engine CPU per fix: "
        f"{args.against} ({old_name}) {old_us:.2f} µs, this checkout {new_us:.2f} µs, new / old {new_us / old_us:.3f}"
    )
    print("events: the same" if not differ else f"events: DIFFER in {differ} of {len(old_batches)} batches")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
