"""Paired end-to-end A/B: this checkout's server against a git revision's, draining at the same time.

    .venv/bin/python tools/ab_e2e.py --against REV [--rounds 3] [--cases single,batched]
    .venv/bin/python tools/ab_e2e.py --against self          # the noise floor
    .venv/bin/python tools/ab_e2e.py --against self --b-env GPSD_DATABASE__FLUSH_INTERVAL_MS=200   # a setting

This machine's speed drifts by up to 1.7x within minutes, so two runs of
``tools/bench_e2e.py`` cannot tell a 10 % change of the server from the
hour it ran in. Here two servers (A: this checkout, B: the revision's
``gpsd_server`` from ``git archive``, run from a temporary folder) share one
private PostgreSQL and Mosquitto (``tools/procs.py``), each with a database,
a broker session and a websocket reader of its own, the city and the fleet of
``tools/bench_e2e.py``. Each round, for each case, both servers are stopped
(SIGSTOP), the same messages are queued for both, both are continued in
turn (who goes first alternates) and drain side by side: whatever the machine
does then, it does to both. Per server: CPU per fix of its loop thread and its
writer thread (``/proc``), and of PostgreSQL's backends serving its database
(their process titles name it); PostgreSQL's shared work (WAL writer,
checkpointer, autovacuum) and the broker are not split.

Before the first round each database gets one fix per vehicle (stored by its
server), so every drain meets vehicles its server restored at start, as in
``bench_e2e``; each round's fixes come after the last round's.

Prints each round and the median of B / A per case and figure; the drains
are also compared: both servers must store every fix. Exits 1 if a drain
fails or the stored counts differ. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import ab_engine  # noqa: E402  (sibling scripts, not a package)
import bench_e2e  # noqa: E402
from bench_e2e import RawReader, Server, children_of, cpu_s, publish_all, run_readers  # noqa: E402

from tools.procs import PrivateServices, private_services  # noqa: E402


def extract(rev: str, into: Path) -> Path:
    """The revision's ``gpsd_server`` under ``into`` (a folder to put first on PYTHONPATH)."""
    sha = ab_engine.short_sha(rev)
    folder = into / f"rev-{sha}"
    folder.mkdir()
    ab_engine.unpack(sha, folder)
    # The editable install points at this checkout: PYTHONPATH must win over it.
    where = subprocess.run(
        [sys.executable, "-c", "import gpsd_server; print(gpsd_server.__file__)"], cwd=into, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(folder)},
    ).stdout.strip()  # fmt: skip
    if not Path(where).is_relative_to(folder):
        raise SystemExit(f"server B would import {where}, not the revision in {folder}")
    return folder


def backends(svc: PrivateServices, databases: list[str]) -> dict[tuple[int, int], tuple[str, float]]:
    """The live PostgreSQL backends connected to each database, by (pid, start
    time): their database (``postgres: user database host(port) state`` in
    the process title) and CPU seconds."""
    pm = int((svc.pg_data / "postmaster.pid").read_text().split()[0])
    out = {}
    for pid in children_of(pm):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            started = int(bench_e2e._stat(f"/proc/{pid}/stat")[19])
        except (OSError, ValueError, IndexError):
            continue
        parts = title.split()
        if len(parts) >= 3 and parts[0] == "postgres:" and parts[2] in databases:
            out[(pid, started)] = (parts[2], cpu_s(pid))
    return out


def backend_cpu_since(svc: PrivateServices, db: str, before: dict[tuple[int, int], tuple[str, float]]) -> float:
    """CPU seconds the backends of ``db`` used since ``before`` was read (a
    backend started since counts whole; one that ended since is lost)."""
    return sum(cpu - before.get(key, (name, 0.0))[1] for key, (name, cpu) in backends(svc, [db]).items())


@dataclass
class Side:
    """One of the two servers of a round."""

    name: str  # A or B
    db: str
    env: dict[str, str]
    server: Server | None = None
    base: dict[str, Any] | None = None
    loop0: float = 0.0
    writer0: float = 0.0
    pg0: dict[tuple[int, int], tuple[str, float]] = field(default_factory=dict)

    def cpu(self) -> tuple[float, float]:
        assert self.server is not None and self.base is not None
        threads = bench_e2e.thread_cpu_s(self.server.pid)
        writer_tid = int(self.base["writer_thread_id"])
        return threads.get(self.server.pid, 0.0), threads.get(writer_tid, 0.0)


@dataclass
class Figures:
    fixes: int
    wall_s: float
    loop_us: float
    writer_us: float
    pg_us: float

    @property
    def server_us(self) -> float:
        return self.loop_us + self.writer_us


def drain_pair(
    svc: PrivateServices, work: Path, city: Path, sides: list[Side], messages: list[tuple[str, bytes]],
    fixes: int, first: int,
) -> dict[str, Figures]:  # fmt: skip
    """Both servers drain ``messages`` side by side. ``first`` (0 or 1) is
    started, fed and continued first: the broker serves its sessions in the
    order they came, which alone made one of two identical servers 10 % dearer
    per single-fix message, so the order alternates round by round."""
    sides = sides[first:] + sides[:first]
    for side in sides:
        side.server = Server(svc, work, city, side.db, side.env)
        side.server.start()
    readers: list[RawReader] = []
    try:
        for side in sides:
            assert side.server is not None
            side.base = side.server.stats()
            readers.append(RawReader(side.server.proc.ws_url() + bench_e2e.WS_FORMS["page"]))
        ready, stop = threading.Event(), threading.Event()
        reading = threading.Thread(target=run_readers, args=(readers, ready, stop), daemon=True)
        reading.start()
        if not ready.wait(30):
            raise SystemExit("websocket clients did not connect")
        for side in sides:
            assert side.server is not None
            os.kill(side.server.pid, signal.SIGSTOP)
        try:
            for side in sides:
                assert side.server is not None
                publish_all(svc.mqtt_port, [(f"{side.server.prefix}/{t}", p) for t, p in messages])
            time.sleep(0.5)
            pg = backends(svc, [s.db for s in sides])
            for side in sides:
                side.loop0, side.writer0 = side.cpu()
                side.pg0 = pg
        finally:
            for side in sides:
                assert side.server is not None
                os.kill(side.server.pid, signal.SIGCONT)
        done: dict[str, Figures] = {}
        deadline = time.monotonic() + 900
        while len(done) < len(sides):
            if time.monotonic() > deadline:
                raise SystemExit(f"drain did not finish in 900 s: {sorted(done)} done")
            for side in sides:
                if side.name in done:
                    continue
                assert side.server is not None and side.base is not None
                s = side.server.stats()
                stored = s["db_rows_copied"] - side.base["db_rows_copied"]
                if stored >= fixes and s["db_queue_rows"] == 0 and s["messages_received"] >= len(messages):
                    loop, writer = side.cpu()
                    pg = backend_cpu_since(svc, side.db, side.pg0)
                    done[side.name] = Figures(
                        stored, s["db_last_commit_at"] - s["first_message_at"],
                        (loop - side.loop0) / stored * 1e6, (writer - side.writer0) / stored * 1e6,
                        pg / stored * 1e6,
                    )  # fmt: skip
            time.sleep(0.1)
        stop.set()
        reading.join(10)
        return done
    finally:
        for side in sides:
            if side.server is not None:
                side.server.stop()
                side.server = None


def _ratio(b: float, a: float) -> float:
    """B / A; NaN when A measured nothing (a small run's writer can stay under one 10 ms clock tick)."""
    return b / a if a > 0 else math.nan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="the git revision of server B; 'self': this checkout twice")
    ap.add_argument(
        "--b-env", action="append", default=[], metavar="NAME=VALUE",
        help="a setting of server B only, e.g. GPSD_DATABASE__FLUSH_INTERVAL_MS=200 (repeatable; with --against self:"
        " two settings of the same code)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="single,batched")
    ap.add_argument("--fixes", type=int, default=50_000, help="messages of the single-fix drain")
    ap.add_argument("--batched-fixes", type=int, default=250_000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--zones", type=int, default=1000)
    ap.add_argument("--routes", type=int, default=100)
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or not set(cases) <= {"single", "batched"}:
        ap.error("--cases: single, batched or both")
    # A TERM (a timeout, a kill) still stops the private broker, database and servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with private_services("gpsd-ab-e2e-") as svc:
        root = svc.root
        city = root / "city"
        city.mkdir()
        bench_e2e.write_city(city, zones=args.zones, routes=args.routes, vehicles=args.vehicles, seed=1)
        env = {
            "GPSD_INGEST__MAX_AGE_DAYS": "3650", "GPSD_LOG_LEVEL": "WARNING", "GPSD_INGEST__STATS_LOG_INTERVAL_S": "60",
        }  # fmt: skip
        b_env = dict(env)
        for item in args.b_env:
            name, eq, value = item.partition("=")
            if not eq or not name.startswith("GPSD_"):
                ap.error(f"--b-env {item!r}: want GPSD_NAME=VALUE")
            b_env[name] = value
        b_name = "this checkout" + "".join(f", {item}" for item in args.b_env)
        if args.against != "self":
            b_env["PYTHONPATH"] = str(extract(args.against, root))
            b_name = f"{args.against} (imported from {b_env['PYTHONPATH']})" + "".join(f", {i}" for i in args.b_env)
        sides = [Side("A", "ab_a", env), Side("B", "ab_b", b_env)]
        t = time.time() - 86400 * 3
        for side in sides:
            svc.create_db(side.db)
            bench_e2e.warm_up(lambda s=side: Server(svc, root, city, s.db, s.env), svc.mqtt_port, args.vehicles, t)
        rounds: dict[str, list[dict[str, Figures]]] = {c: [] for c in cases}
        for r in range(args.rounds):
            for case in cases:
                t += 86400 / 4  # later than every fix before: nothing arrives late
                if case == "single":
                    msgs, fixes = bench_e2e.single_messages(args.vehicles, args.fixes, t), args.fixes
                else:
                    msgs = bench_e2e.batched_messages(args.vehicles, args.batched_fixes, args.batch, t)
                    fixes = args.vehicles * max(args.batch, args.batched_fixes // args.vehicles)
                got = drain_pair(svc, root, city, sides, msgs, fixes, first=r % 2)
                rounds[case].append(got)
                a, b = got["A"], got["B"]
                print(
                    f"round {r + 1} {case}: server µs/fix A {a.server_us:.1f} ({a.loop_us:.1f} + {a.writer_us:.1f}),"
                    f" B {b.server_us:.1f} ({b.loop_us:.1f} + {b.writer_us:.1f}), B/A {b.server_us / a.server_us:.3f};"
                    f" PostgreSQL µs/fix A {a.pg_us:.1f}, B {b.pg_us:.1f}; stored A {a.fixes:,}, B {b.fixes:,}",
                    flush=True,
                )
                if a.fixes != b.fixes:
                    print(f"stored counts differ: A {a.fixes:,}, B {b.fixes:,}")
                    return 1
        print(f"\nA: this checkout; B: {b_name}. Medians over {args.rounds} round(s), B / A (above 1: B costs more):")
        for case, got_rounds in rounds.items():
            ratio = {
                name: statistics.median(_ratio(getattr(g["B"], attr), getattr(g["A"], attr)) for g in got_rounds)
                for name, attr in (("server", "server_us"), ("loop", "loop_us"), ("writer", "writer_us"),
                                   ("PostgreSQL", "pg_us"))
            }  # fmt: skip
            med_a = statistics.median(g["A"].server_us for g in got_rounds)
            med_b = statistics.median(g["B"].server_us for g in got_rounds)
            print(
                f"- {case}: server CPU per fix A {med_a:.1f} µs, B {med_b:.1f} µs; B/A "
                + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items())
            )
        return 0


if __name__ == "__main__":
    sys.exit(main())
