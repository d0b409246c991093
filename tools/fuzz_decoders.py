"""Fuzz the pure decoders: native JSON, OwnTracks and the EMQX JT/T 808 JSON.

    .venv/bin/python tools/fuzz_decoders.py [-n 1000000] [--seed 1]

A seeded generator builds valid payloads of each kind, then mutates them:
bytes (bit flips, inserts, deletes, repeats, truncation, splicing two
payloads, tokens such as ``NaN`` or ``1e999``), JSON structure (a value
replaced by one of another type or an extreme one, a key dropped or added,
deep nesting) or replaces them with random JSON. Every payload goes to every
decoder it could plausibly reach, and a batch with valid items interleaved
with garbage checks that the good items all come back.

Checked for each call: no exception escapes; the result is a list of ``Fix``
and ``DecodeError``; every rejection has a reason code (``[a-z0-9_]+``);
every fix has a finite, in-range position and time; an unmutated payload
decodes to exactly the fixes it holds. Prints the rate and the rejections by
reason, and exits 1 listing the first failures if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpsd_server.core.decode.jt808 import decode_jt808, terminal_registry
from gpsd_server.core.decode.native import decode_native
from gpsd_server.core.decode.owntracks import decode_owntracks
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix
from gpsd_server.settings import IngestSettings

NOW = 1_795_000_000.0  # a fixed clock: runs are reproducible
LIMITS = IngestSettings(max_payload_bytes=65536, max_batch_items=200)
PHONE, VEHICLE, DEVICE = "13800138000", "MT-001", "alice/phone"
TERMINALS = terminal_registry([(PHONE, VEHICLE)])
DEVICES = {DEVICE: "PT-001"}
BEIJING = timedelta(hours=8)
REASON = re.compile(r"^[a-z][a-z0-9_]*$")

Decoder = Callable[[bytes], list[Fix | DecodeError]]
DECODERS: dict[str, Decoder] = {
    "native": lambda p: decode_native(VEHICLE, p, now=NOW, limits=LIMITS),
    "owntracks": lambda p: decode_owntracks(DEVICE, p, now=NOW, limits=LIMITS, devices=DEVICES),
    "jt808": lambda p: decode_jt808(PHONE, p, now=NOW, limits=LIMITS, terminals=TERMINALS),
}
# (ts, lon, lat) of each fix a valid payload holds, in order
Expected = list[tuple[float, float, float]]

TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"-0", b"0", b"1e-400", b"18446744073709551616",
    b"-9223372036854775809", b"1.7976931348623157e308", b"null", b"true", b"[]", b"{}", b'""', b'"\\ud800"',
    b'"\\u0000"', b"\xff\xfe", b"\x00", b'"2026-13-45T25:61:61+08:00"', b'"1e3"', b"[" * 50, b"}" * 5,
]  # fmt: skip
EXTREMES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**32, 2**63 - 1, -(2**63), 10**30, 0.5, -0.0, 1e308, -1e308, 1e-320,
    "", "x", "NaN", "0", "2026-11-27T21:30:05+08:00", "2026-11-27T21:30:05", "260101000000", "991231235959",
    "中文", "\u0000", [], {}, [1, 2], {"a": 1}, "A" * 300,
]  # fmt: skip


def _ts_value(rng: random.Random, ts: float) -> Any:
    form = rng.randrange(3)
    if form == 0:
        return ts
    if form == 1:
        return int(ts * 1000)
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat()


def valid_native(rng: random.Random) -> tuple[bytes, Expected]:
    items, expected = [], []
    base = NOW - rng.uniform(0, 86400)
    for i in range(rng.choice((1, 1, 1, 2, 5))):
        ts = float(int(base) + i)
        lon, lat = round(rng.uniform(108, 114), 6), round(rng.uniform(20, 30), 6)
        item: dict[str, Any] = {"ts": _ts_value(rng, ts), "lon": lon, "lat": lat}
        if rng.random() < 0.7:
            item |= {
                "speed_kmh": round(rng.uniform(0, 90), 1),
                "heading": rng.randrange(360),
                "sats": rng.randrange(20),
            }
        if rng.random() < 0.3:
            item |= {"alarm": rng.randrange(2**32), "status": rng.randrange(2**32), "ignition": rng.random() < 0.5}
        if rng.random() < 0.3:
            item["sensors"] = {"loaded": True, "cover_closed": False, "drum": rng.choice(["cw", "ccw", "stopped"])}
        items.append(item)
        expected.append((ts, lon, lat))
    doc: Any = items[0] if len(items) == 1 and rng.random() < 0.7 else items
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode(), expected


def valid_owntracks(rng: random.Random) -> tuple[bytes, Expected]:
    ts = float(int(NOW - rng.uniform(0, 86400)))
    lon, lat = round(rng.uniform(108, 114), 6), round(rng.uniform(20, 30), 6)
    doc = {"_type": "location", "lat": lat, "lon": lon, "tst": int(ts), "tid": "al", "acc": rng.randrange(1, 50)}
    if rng.random() < 0.6:
        doc |= {"vel": rng.randrange(80), "cog": rng.randrange(360), "batt": rng.randrange(100)}
    return json.dumps(doc).encode(), [(ts, lon, lat)]


def _jt808_location(rng: random.Random, ts: float) -> tuple[dict[str, Any], tuple[float, float, float]]:
    lon_u, lat_u = rng.randrange(108_000_000, 114_000_000), rng.randrange(20_000_000, 30_000_000)
    bcd = (datetime.fromtimestamp(ts, UTC) + BEIJING).strftime("%y%m%d%H%M%S")
    body = {
        "alarm": 0, "status": 0b11, "latitude": lat_u, "longitude": lon_u, "altitude": rng.randrange(200),
        "speed": rng.randrange(900), "direction": rng.randrange(360), "time": bcd,
    }  # fmt: skip
    if rng.random() < 0.5:
        body["extra"] = {"mileage": rng.randrange(10**6), "gnss_sat_num": rng.randrange(20)}
    return body, (ts, lon_u / 1e6, lat_u / 1e6)


def valid_jt808(rng: random.Random) -> tuple[bytes, Expected]:
    base = float(int(NOW - rng.uniform(0, 86400)))
    header = {"msg_id": 512, "encrypt": 0, "len": 40, "phone": PHONE, "msg_sn": rng.randrange(65536)}
    if rng.random() < 0.7:
        body, exp = _jt808_location(rng, base)
        return json.dumps({"header": header, "body": body}).encode(), [exp]
    locs = [_jt808_location(rng, base + i) for i in range(rng.randrange(1, 6))]
    header["msg_id"] = 0x0704
    doc = {"header": header, "body": {"type": rng.randrange(2), "length": len(locs), "location": [b for b, _ in locs]}}
    return json.dumps(doc).encode(), [e for _, e in locs]


VALID: dict[str, Callable[[random.Random], tuple[bytes, Expected]]] = {
    "native": valid_native,
    "owntracks": valid_owntracks,
    "jt808": valid_jt808,
}


SPECIAL: list[Callable[[random.Random], bytes]] = [
    lambda rng: b'{"ts": 1, "lon": 1, "lat": "' + b"x" * (LIMITS.max_payload_bytes + rng.randrange(10)) + b'"}',
    lambda rng: json.dumps([{"ts": NOW, "lon": 112.0, "lat": 28.0}] * (LIMITS.max_batch_items + 1)).encode(),
    lambda rng: json.dumps({"ts": NOW - 10, "lon": 0, "lat": 0.0}).encode(),
    lambda rng: json.dumps({"_type": "encrypted", "data": "abc"}).encode(),
    lambda rng: json.dumps({"_type": rng.choice(["transition", "waypoint", "lwt", "card"]), "tst": 1}).encode(),
    lambda rng: json.dumps(
        {"header": {"msg_id": rng.choice([2, 256, 258, 0x0704]), "phone": "1"}, "body": {}}
    ).encode(),
    lambda rng: json.dumps({"header": {"msg_id": 512}, "body": {"time": "26", "latitude": -1}}).encode(),
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 4 or r < 0.4:
        return rng.choice(EXTREMES) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
    if r < 0.7:
        keys = ["ts", "lon", "lat", "_type", "header", "body", "location", "time", "msg_id", "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def mutate_doc(rng: random.Random, doc: Any) -> Any:
    """Replace, drop or add one value somewhere inside a JSON document."""
    if not isinstance(doc, (dict, list)) or not doc or rng.random() < 0.15:
        return random_json(rng) if rng.random() < 0.5 else rng.choice(EXTREMES)
    if isinstance(doc, list):
        i = rng.randrange(len(doc))
        doc[i] = mutate_doc(rng, doc[i])
        if rng.random() < 0.1:
            doc.append(random_json(rng))
        return doc
    key = rng.choice(list(doc))
    action = rng.random()
    if action < 0.2:
        del doc[key]
    elif action < 0.3:
        doc[rng.choice(["extra", "vehicle_id", "sensors", "acc", "phone", "zz"])] = random_json(rng)
    elif action < 0.35:
        doc[key] = [[[[[[doc[key]]]]]]]
    else:
        doc[key] = mutate_doc(rng, doc[key])
    return doc


def mutate_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif op == 2:
            del b[pos : pos + rng.randrange(1, 16)]
        elif op == 3:
            b[pos:pos] = rng.choice(TOKENS)
        elif op == 4:
            del b[pos:]
        elif op == 5:
            cut = rng.randrange(len(other) + 1)
            b = b[:pos] + bytearray(other[cut:])
        else:
            chunk = b[pos : pos + rng.randrange(1, 32)]
            b[pos:pos] = chunk * rng.randrange(1, 20)
    return bytes(b)


@dataclass
class Report:
    payloads: int = 0
    calls: int = 0
    fixes: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0
    interleaved_valid: int = 0  # valid items placed among garbage in a batch
    interleaved_returned: int = 0  # ... of which came back as the right fix
    seconds: float = 0.0

    def fail(self, what: str, kind: str, payload: bytes) -> None:
        self.failure_count += 1
        if len(self.failures) < 20:
            self.failures.append(f"{kind}: {what}\n    payload: {payload[:300]!r}")

    @property
    def ok(self) -> bool:
        return self.failure_count == 0 and self.interleaved_returned == self.interleaved_valid


def check(report: Report, kind: str, payload: bytes, expected: Expected | None) -> list[Fix | DecodeError]:
    report.calls += 1
    try:
        result = DECODERS[kind](payload)
    except Exception:  # the property under test: nothing escapes
        report.fail("exception escaped:\n" + traceback.format_exc(limit=4), kind, payload)
        return []
    if not isinstance(result, list):
        report.fail(f"result is {type(result).__name__}, not a list", kind, payload)
        return []
    for item in result:
        if isinstance(item, DecodeError):
            if not isinstance(item.reason, str) or not REASON.match(item.reason):
                report.fail(f"rejection without a reason code: {item!r}", kind, payload)
            report.rejects[f"{kind}:{item.reason}"] += 1
        elif isinstance(item, Fix):
            report.fixes += 1
            if not (
                math.isfinite(item.ts)
                and math.isfinite(item.lon)
                and math.isfinite(item.lat)
                and -180 <= item.lon <= 180
                and -90 <= item.lat <= 90
                and item.vehicle_id
            ):
                report.fail(f"invalid fix accepted: {item!r}", kind, payload)
        else:
            report.fail(f"result item is {type(item).__name__}", kind, payload)
    if expected is not None:
        got = [(f.ts, f.lon, f.lat) for f in result if isinstance(f, Fix)]
        if not _same(got, expected) or len(got) != len(result):
            report.fail(f"valid payload decoded to {result!r}, expected {expected!r}", kind, payload)
    return result


def _same(got: Expected, expected: Expected) -> bool:
    return len(got) == len(expected) and all(
        abs(a[0] - b[0]) < 1e-3 and abs(a[1] - b[1]) < 1e-9 and abs(a[2] - b[2]) < 1e-9
        for a, b in zip(got, expected, strict=True)
    )


def interleaved(rng: random.Random, report: Report, kind: str) -> None:
    """A batch (native array or JT/T 808 0x0704) of valid items and garbage:
    every valid item comes back as its fix, at its index."""
    slots: list[tuple[Any, tuple[float, float, float] | None]] = []
    base = float(int(NOW - rng.uniform(3600, 86400)))
    for i in range(rng.randrange(2, 30)):
        ts = base + i
        if kind == "native":
            lon, lat = round(rng.uniform(108, 114), 6), round(rng.uniform(20, 30), 6)
            good: Any = {"ts": ts, "lon": lon, "lat": lat}
            exp = (ts, lon, lat)
        else:
            good, exp = _jt808_location(rng, ts)
        if rng.random() < 0.5:
            slots.append((good, exp))
        else:
            slots.append((mutate_doc(rng, json.loads(json.dumps(good))), None))
    if kind == "native":
        payload = json.dumps([s for s, _ in slots]).encode()
    else:
        header = {"msg_id": 0x0704, "phone": PHONE}
        payload = json.dumps({"header": header, "body": {"type": 0, "location": [s for s, _ in slots]}}).encode()
    result = check(report, kind, payload, None)
    for i, (_, exp) in enumerate(slots):
        if exp is None:
            continue
        report.interleaved_valid += 1
        item = result[i] if i < len(result) else None
        if isinstance(item, Fix) and _same([(item.ts, item.lon, item.lat)], [exp]):
            report.interleaved_returned += 1
        else:
            report.fail(f"valid item {i} of an interleaved batch came back as {item!r}", kind, payload)


def fuzz(n: int, seed: int = 1) -> Report:
    rng = random.Random(seed)
    report = Report()
    kinds = list(DECODERS)
    t0 = time.perf_counter()
    corpus = [VALID[k](rng)[0] for k in kinds for _ in range(20)]
    for i in range(n):
        report.payloads += 1
        kind = kinds[i % len(kinds)]
        r = rng.random()
        if r < 0.05:
            payload, expected = VALID[kind](rng)
            check(report, kind, payload, expected)
            corpus[rng.randrange(len(corpus))] = payload
            continue
        if r < 0.08:
            interleaved(rng, report, "native" if kind != "jt808" else "jt808")
            continue
        payload, _ = VALID[kind](rng)
        if r < 0.45:
            payload = mutate_bytes(rng, payload, rng.choice(corpus))
        elif r < 0.85:
            try:
                doc = mutate_doc(rng, json.loads(payload))
                payload = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
            except ValueError:  # e.g. a lone surrogate json cannot encode as UTF-8
                payload = mutate_bytes(rng, payload, rng.choice(corpus))
        elif r < 0.95:
            payload = json.dumps(random_json(rng)).encode("utf-8", "surrogatepass")
        elif r < 0.96:
            payload = b"[" * rng.randrange(100, 5000) + b"]" * rng.randrange(0, 5000)
        elif r < 0.97:
            payload = rng.choice(SPECIAL)(rng)
        else:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        check(report, kind, payload, None)
        if rng.random() < 0.3:  # the same bytes at another decoder
            check(report, rng.choice(kinds), payload, None)
    report.seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", "--payloads", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    report = fuzz(args.payloads, args.seed)
    print(
        f"{report.payloads} payloads, {report.calls} decoder calls in {report.seconds:.1f} s "
        f"({report.calls / max(report.seconds, 1e-9):,.0f} calls/s); {report.fixes} fixes, "
        f"{sum(report.rejects.values())} rejections"
    )
    print(f"interleaved batches: {report.interleaved_returned} of {report.interleaved_valid} valid items returned")
    print("rejections by reason:")
    for reason, count in sorted(report.rejects.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>9}  {reason}")
    if not report.ok:
        print(f"FAILED: {report.failure_count} check(s) failed; first ones:", file=sys.stderr)
        for f in report.failures:
            print("  " + f, file=sys.stderr)
        return 1
    print("OK: no exception escaped, every rejection has a reason")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
