"""Fleet simulator: drive the demo city's vehicles and publish their fixes over MQTT.

Examples:
  # the demo: every vehicle of geofences/vehicles.json, real time, from now on, with violations now and then
  python tools/simulate.py --inject-rate 20 --truth .state/truth.jsonl
  # tests: 15 simulated minutes at 30x, one of each violation, seeded
  python tools/simulate.py --speed 30 --duration 900 --start 2025-06-02T10:00:00+08:00 \\
      --inject all --truth truth.jsonl --seed 7
  # load: as fast as the broker takes it
  python tools/simulate.py --speed max --duration 3600 --quiet
  # no broker: write the publications as JSON lines instead
  python tools/simulate.py --dry-run out.jsonl --duration 600
  # a 12319 dispatch: patrol car PC-001 drives to the place and stays 10 minutes
  python tools/simulate.py --goto PC-001:112.3585,28.5855:600

Ground truth (``--truth``): JSON lines, first a ``{"kind": "_run", ...}`` line
with the run's window, then one line per violation the simulator committed:
vehicle_id, kind, start, end (RFC 3339), injection, injected, detail.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

if __package__ in (None, ""):  # run as a script: make the repository's `tools` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.sim import city as city_mod
from tools.sim.clock import parse_time, rfc3339
from tools.sim.inject import ALERTING_KINDS, KINDS
from tools.sim.simulation import Publication, SimConfig, Simulation

REPO = Path(__file__).resolve().parent.parent


def parse_kinds(text: str) -> tuple[str, ...]:
    if text in ("", "none"):
        return ()
    kinds = (*ALERTING_KINDS, "duplicate", "late", "malformed") if text == "all" else tuple(text.split(","))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {', '.join(bad)}; known: {', '.join(KINDS)}")
    return kinds


def parse_goto(text: str) -> tuple[str, float, float, float]:
    """``VEHICLE:LON,LAT[:HOLD_S]`` -> (vehicle, lon, lat, hold_s)."""
    parts = text.split(":")
    try:
        lon, lat = (float(x) for x in parts[1].split(","))
        hold = float(parts[2]) if len(parts) > 2 else 600.0
    except (IndexError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: want VEHICLE:LON,LAT[:HOLD_S]") from None
    if len(parts) > 3 or not parts[0] or not (-180 <= lon <= 180 and -90 <= lat <= 90) or hold < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: want VEHICLE:LON,LAT[:HOLD_S]")
    return parts[0], lon, lat, hold


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Simulate the demo fleet and publish its fixes over MQTT.")
    ap.add_argument("--city", type=Path, default=REPO / "geofences", help="geofence folder (default: geofences/)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GPSD_MQTT_PORT", "18830")))
    ap.add_argument("--client-id", default=None, help="MQTT client id (default: gpsd-sim-<pid>)")
    ap.add_argument("--seed", type=int, default=808)
    ap.add_argument(
        "--start", default=None, help="simulated start, RFC 3339 (default: now; with --speed >1: now - duration)"
    )
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds (default: until Ctrl-C)")
    ap.add_argument(
        "--speed", default="1", help="simulated seconds per wall second: 1 = real time, 30 = x30, max = no pacing"
    )
    ap.add_argument(
        "--catch-up-s",
        type=float,
        default=540.0,
        help="with --speed > 1 and no --duration: simulated seconds replayed fast before real time (default 540)",
    )
    ap.add_argument("--interval", type=int, default=10, help="report interval, simulated seconds")
    ap.add_argument("--sigma", type=float, default=8.0, help="GPS noise, metres (σ east and north)")
    for cls, flag in (("muck_truck", "muck"), ("mixer_truck", "mixers"), ("patrol", "patrol"), ("other", "other")):
        ap.add_argument(
            f"--{flag}", type=int, default=None, help=f"number of {cls} vehicles (default: all in vehicles.json)"
        )
    ap.add_argument(
        "--inject", type=parse_kinds, default=(), help="comma list of violation kinds to inject once each, or 'all'"
    )
    ap.add_argument("--inject-rate", type=float, default=0.0, help="further violations per hour, fleet-wide")
    ap.add_argument("--rate-kinds", type=parse_kinds, default=ALERTING_KINDS, help="kinds drawn for --inject-rate")
    ap.add_argument("--offline-s", type=float, default=660.0, help="silence of an injected offline, simulated seconds")
    ap.add_argument("--truth", type=Path, default=None, help="write ground truth (JSON lines) here")
    ap.add_argument("--topic-prefix", default="fleet")
    ap.add_argument("--owntracks-prefix", default="owntracks")
    ap.add_argument("--jt808-prefix", default="jt808")
    ap.add_argument(
        "--owntracks-share", type=float, default=0.0, help="share of OwnTracks-capable patrol cars that use it"
    )
    ap.add_argument(
        "--jt808-share", type=float, default=0.0, help="share of vehicles with a terminal that speak JT/T 808"
    )
    ap.add_argument(
        "--goto",
        type=parse_goto,
        action="append",
        default=[],
        metavar="VEHICLE:LON,LAT[:HOLD_S]",
        help="send a vehicle to a point at the start and keep it there HOLD_S (default 600) seconds, as a"
        " 12319 dispatch would; repeatable",
    )
    ap.add_argument(
        "--follow-cases",
        default=None,
        metavar="WS_URL",
        help="the server's /ws/live?token=...: drive each patrol car the server dispatches to its 12319 case",
    )
    ap.add_argument(
        "--not-before",
        type=float,
        default=None,
        help="epoch seconds: start no earlier (a second demo run on the same state must not replay "
        "what the first one stored: those fixes would all arrive late)",
    )
    ap.add_argument("--dry-run", type=Path, default=None, help="no broker: write publications to this JSON lines file")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def make_config(args: argparse.Namespace) -> SimConfig:
    speed = None if args.speed == "max" else float(args.speed)
    if args.start:
        start = parse_time(args.start)
    elif speed is not None and speed <= 1:
        start = time.time()
    else:
        # Faster than real time: start in the past, so the run reaches "now"
        # (at the end of --duration, or after --catch-up-s of simulated time)
        # and then goes on in real time: no fix is ever stamped in the future
        # (the server rejects those as ts_future).
        start = time.time() - (args.duration if args.duration is not None else args.catch_up_s)
    if args.not_before is not None:
        start = max(start, min(args.not_before, time.time()))
    counts = None
    flags = {"muck_truck": args.muck, "mixer_truck": args.mixers, "patrol": args.patrol, "other": args.other}
    if any(n is not None for n in flags.values()):
        counts = {cls: (10**9 if n is None else n) for cls, n in flags.items()}
    return SimConfig(
        start=start,
        duration_s=args.duration,
        seed=args.seed,
        interval_s=args.interval,
        sigma_m=args.sigma,
        counts=counts,
        inject=args.inject,
        inject_rate_per_h=args.inject_rate,
        rate_kinds=args.rate_kinds,
        topic_prefix=args.topic_prefix,
        owntracks_prefix=args.owntracks_prefix,
        jt808_prefix=args.jt808_prefix,
        owntracks_share=args.owntracks_share,
        jt808_share=args.jt808_share,
        offline_s=args.offline_s,
    )


class CaseFollower:
    """Reads ``case`` messages from the server's /ws/live (a thread of its own)
    and queues a drive to the place for each car dispatched; the simulation
    loop takes them between seconds, so the demo's cars answer the page."""

    def __init__(self, url: str, hold_s: float = 900.0) -> None:
        self.url, self.hold_s = url, hold_s
        self.orders: queue.SimpleQueue[tuple[str, float, float]] = queue.SimpleQueue()
        self.done: set[tuple[int, str, str]] = set()
        threading.Thread(target=self._read, name="follow-cases", daemon=True).start()

    def _read(self) -> None:
        from websockets.sync.client import connect

        while True:
            try:
                with connect(self.url, max_size=None) as ws:
                    for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") != "case":
                            continue
                        event = msg.get("event") or {}
                        if event.get("kind") in ("dispatched", "reassigned") and msg.get("vehicle_id"):
                            key = (msg["id"], msg["vehicle_id"], str(msg.get("assigned_at")))
                            if key not in self.done:
                                self.done.add(key)
                                self.orders.put((msg["vehicle_id"], float(msg["lon"]), float(msg["lat"])))
            except Exception as exc:
                print(f"simulate: --follow-cases: {exc}; reconnecting", file=sys.stderr)
                time.sleep(2.0)

    def apply(self, sim: Simulation) -> None:
        while not self.orders.empty():
            vehicle_id, lon, lat = self.orders.get()
            if vehicle_id in sim.by_id:
                metres = sim.goto(vehicle_id, lon, lat, hold_s=self.hold_s)
                print(f"simulate: {vehicle_id} dispatched, {metres:.0f} m to go", file=sys.stderr)


class TruthWriter:
    """Ground truth as it happens (a demo may be stopped at any time)."""

    def __init__(self, path: Path | None, sim: Simulation) -> None:
        self.file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        self.written = 0
        self.line(
            {
                "kind": "_run",
                "vehicle_id": "",
                "start": rfc3339(sim.t),
                "end": rfc3339(sim.end) if sim.end else None,
                "seed": sim.cfg.seed,
                "interval_s": sim.cfg.interval_s,
                "sigma_m": sim.cfg.sigma_m,
                "vehicles": len(sim.vehicles),
            }
        )

    def line(self, obj: dict[str, Any]) -> None:
        if self.file:
            self.file.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
            self.file.flush()

    def update(self, sim: Simulation) -> None:
        for obj in sim.truth[self.written :]:
            self.line(obj)
        self.written = len(sim.truth)

    def close(self, sim: Simulation) -> None:
        sim.close()
        self.update(sim)
        self.line({"kind": "_run_end", "vehicle_id": "", "start": rfc3339(sim.t), "end": rfc3339(sim.t)})
        if self.file:
            self.file.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    city = city_mod.load(args.city)
    sim = Simulation(city, make_config(args))
    for vehicle_id, lon, lat, hold_s in args.goto:
        if vehicle_id not in sim.by_id:
            print(f"simulate: --goto: no vehicle {vehicle_id!r} in this run", file=sys.stderr)
            return 2
        metres = sim.goto(vehicle_id, lon, lat, hold_s=hold_s)
        print(f"simulate: {vehicle_id} goes to {lon:.6f},{lat:.6f} ({metres:.0f} m by road)", file=sys.stderr)
    truth = TruthWriter(args.truth, sim)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    counter = {"fixes": 0}

    follower = CaseFollower(args.follow_cases) if args.follow_cases else None

    def on_second(s: Simulation, pubs: list[Publication]) -> None:
        if follower is not None:
            follower.apply(s)
        counter["fixes"] += len(pubs)
        truth.update(s)
        if not args.quiet and int(s.t) % 60 == 0:
            print(f"simulate: {rfc3339(s.t)} {counter['fixes']} messages, {len(s.truth)} violations", file=sys.stderr)

    for w in sim.warnings:
        print(f"simulate: {w}", file=sys.stderr)
    try:
        if args.dry_run:
            run_dry(sim, args.dry_run, on_second, stop)
        else:
            from tools.sim.mqtt import Publisher, run

            pub = Publisher(args.host, args.port, args.client_id or f"gpsd-sim-{os.getpid()}", stop=stop)
            try:
                run(sim, pub, speed=None if args.speed == "max" else float(args.speed), on_second=on_second, stop=stop)
            finally:
                pub.close()
    except KeyboardInterrupt:
        pass
    truth.close(sim)
    for w in sim.warnings:
        print(f"simulate: {w}", file=sys.stderr)
    print(f"simulate: {counter['fixes']} messages, {len(sim.truth)} ground-truth violations", file=sys.stderr)
    return 0


def run_dry(sim: Simulation, path: Path, on_second: Any, stop: threading.Event) -> None:
    with path.open("w", encoding="utf-8") as out:
        while not sim.done() and not stop.is_set():
            pubs = sim.advance()
            for p in pubs:
                out.write(
                    json.dumps({"topic": p.topic, "ts": p.ts, "payload": p.payload.decode("utf-8", "replace")}) + "\n"
                )
            on_second(sim, pubs)


if __name__ == "__main__":
    sys.exit(main())
