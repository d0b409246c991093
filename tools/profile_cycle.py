"""CPU per fix of one batch cycle without I/O: decode, engine (filter + rules), ledger.

Feeds a simulator dry run (``tools/simulate.py --dry-run FILE``) through the
pure parts of the pipeline on the demo city, as single-fix messages and as
batches of 50 fixes per message, and prints µs of CPU per fix for each part.
No broker, no database, no websocket: the server's other costs are measured
by tools/bench_e2e.py.

    .venv/bin/python tools/profile_cycle.py /tmp/sim.jsonl [--rounds 3]
    .venv/bin/python tools/profile_cycle.py --memory 10000

``--memory N`` instead measures the engine's memory per tracked vehicle: N
vehicles of the demo city's classes, each with 30 fixes 10 s apart around
the city centre and one blind-area gap (so a gap snapshot is kept), counted
by tracemalloc (Python allocations) and as RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpsd_server.cityfolder import CityFolder, CityKeeper
from gpsd_server.core.decode import Decoder, TopicRouter
from gpsd_server.core.engine import Engine
from gpsd_server.ledger import AlertLedger
from gpsd_server.model import Fix
from gpsd_server.settings import IngestSettings

REPO = Path(__file__).resolve().parent.parent


def load(path: Path) -> list[tuple[str, bytes, float]]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        out.append((d["topic"], d["payload"].encode(), d["ts"]))
    return out


def batched(messages: list[tuple[str, bytes, float]], n: int) -> list[tuple[str, bytes, float]]:
    """The same fixes, n per message per vehicle (JSON arrays), in time order."""
    by_topic: dict[str, list[tuple[bytes, float]]] = {}
    for topic, payload, ts in messages:
        by_topic.setdefault(topic, []).append((payload, ts))
    out = []
    for topic, items in by_topic.items():
        for i in range(0, len(items), n):
            chunk = items[i : i + n]
            out.append((topic, b"[" + b",".join(p for p, _ in chunk) + b"]", chunk[-1][1]))
    out.sort(key=lambda m: m[2])
    return out


def run(messages: list[tuple[str, bytes, float]], cycle: int) -> dict[str, float]:
    engine = Engine(tz="Asia/Shanghai")
    keeper = CityKeeper(
        CityFolder(REPO / "geofences"), engine.build_geometry, on_swap=[lambda d: engine.reload(d.city, d.geometry)]
    )
    data = asyncio.run(keeper.load())
    decoder = Decoder(TopicRouter(), IngestSettings(max_age_days=100000))
    decoder.use_city(data.city)
    ledger = AlertLedger()
    ledger.places = data.places
    gc.collect()
    gc.freeze()
    t = {"decode": 0.0, "engine": 0.0, "ledger": 0.0}
    fixes_total = events = 0
    for i in range(0, len(messages), cycle):
        part = messages[i : i + cycle]
        now = part[-1][2] + 1
        c0 = time.process_time()
        fixes: list[Fix] = []
        for topic, payload, _ in part:
            fixes += [f for f in decoder.decode(topic, payload, now) if isinstance(f, Fix)]
        c1 = time.process_time()
        result = engine.process(fixes, now)
        c2 = time.process_time()
        ledger.rows(result.events, now)
        c3 = time.process_time()
        t["decode"] += c1 - c0
        t["engine"] += c2 - c1
        t["ledger"] += c3 - c2
        fixes_total += len(fixes)
        events += len(result.events)
    per = {k: v / fixes_total * 1e6 for k, v in t.items()}
    per["fixes"] = fixes_total
    per["events_per_1000"] = events / fixes_total * 1000
    return per


def memory(n: int) -> None:
    for gap in (False, True):
        used, rss = _memory(n, gap)
        print(
            f"engine memory, {n:,} vehicles{', each with a kept blind-area gap' if gap else ''}: "
            f"{used:,.0f} bytes per vehicle (tracemalloc; RSS growth {rss:,.0f} with tracemalloc's own overhead)"
        )


def _memory(n: int, with_gap: bool) -> tuple[float, float]:
    engine = Engine(tz="Asia/Shanghai")
    keeper = CityKeeper(
        CityFolder(REPO / "geofences"), engine.build_geometry, on_swap=[lambda d: engine.reload(d.city, d.geometry)]
    )
    data = asyncio.run(keeper.load())
    known = list(data.city.vehicles or {})
    prefixes = ("MT-", "MX-", "PC-", "OT-")
    ids = [known[i] if i < len(known) else f"{prefixes[i % 4]}M{i:05d}" for i in range(n)]
    rng = random.Random(7)
    t0 = 1_795_800_000.0
    starts = {vid: (112.35 + rng.uniform(-0.05, 0.05), 28.57 + rng.uniform(-0.05, 0.05)) for vid in ids}
    engine.process([Fix(ids[0], t0, *starts[ids[0]], received_at=t0)], t0)  # geometry built outside the count
    gc.collect()
    tracemalloc.start()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base = tracemalloc.get_traced_memory()[0]
    for k in range(30):
        ts = t0 + 10 * k + (600 if with_gap and k >= 20 else 0)  # a 10-minute blind area after the 20th fix
        batch = [
            Fix(vid, ts, lon + 0.0001 * k, lat, received_at=ts, speed_kmh=30.0, sats=10)
            for vid, (lon, lat) in starts.items()
        ]
        for i in range(0, len(batch), 5000):
            engine.process(batch[i : i + 5000], ts + 1)
        del batch
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    return used / n, rss / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dry_run", type=Path, nargs="?")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", type=int, metavar="N", help="measure memory per vehicle for N vehicles instead")
    args = ap.parse_args()
    if args.memory:
        memory(args.memory)
        return
    if args.dry_run is None:
        ap.error("give a simulator dry run file, or --memory N")
    single = load(args.dry_run)
    batch = batched(single, 50)
    for name, messages, cycle in (("single-fix messages", single, 500), ("batched, 50 fixes/message", batch, 20)):
        rows = [run(messages, cycle) for _ in range(args.rounds)]
        best = {k: min(r[k] for r in rows) for k in rows[0]}
        print(
            f"{name:<28} decode {best['decode']:5.1f} µs/fix  engine {best['engine']:5.1f}  ledger "
            f"{best['ledger']:4.1f}  total {best['decode'] + best['engine'] + best['ledger']:5.1f}  "
            f"({int(best['fixes'])} fixes, {best['events_per_1000']:.0f} events per 1,000; best of {args.rounds})"
        )


if __name__ == "__main__":
    main()
