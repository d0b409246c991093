"""Survey: run every public JT/T 808 vector through our current code.

Not a pytest test (``test_corpus.py`` asserts what this prints). It loads
``vectors/*.jsonl`` and, for each vector, runs

1. framing: ``jt808.FrameSplitter`` (and ``Reassembler`` for subpackaged
   frames) on the wire bytes; ``form: unescaped`` vectors are escaped first,
   ``form: body_only`` vectors skip framing and get a made-up header;
2. the body: ``jt808_messages.decode_body`` and ``emqx_json``;
3. for 0x0200 / 0x0704: ``decode_jt808.decode_location`` on the EMQX-shaped
   body, one Fix per location;
4. our gateway session: ``Jt808Session.receive`` (no auth required), to
   record the outcome reason the gateway would count;

then compares what came out with what the source asserts (``expect``) and,
for EMQX vectors, with the JSON EMQX's test asserts (``emqx_json``) and the
JSON EMQX's own parser produced (``emqx_observed``).

Run from the worktree root::

    PYTHONPATH=. .venv/bin/python tests/conformance/jt808/survey.py [--summary] [--source SLUG]

Output: one line per vector (``OK`` or the failure stage and reason, then
mismatches), then a summary grouped by source, outcome and mismatch kind.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpsd_server.core.decode.jt808 import decode_location, normalize_phone
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.session import Jt808Session
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import IngestSettings, Jt808Settings

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "vectors"

# Fix times in public vectors span 2014..2026 (and some are synthetic): the
# survey is about decoding, so the age/future window is opened wide.
LIMITS = IngestSettings(max_age_days=(1e11) / 86400, max_future_s=1e11)
NOW = datetime.now(UTC).timestamp()
LOCATION_IDS = (jt808.LOCATION, jt808.LOCATION_BATCH)


def load() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    for path in sorted(VECTORS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                vectors.append(json.loads(line))
    return vectors


def wire_bytes(vec: dict[str, Any]) -> bytes:
    raw = bytes.fromhex(vec["hex"])
    if vec.get("form") == "unescaped" and len(raw) >= 2 and raw[0] == raw[-1] == jt808.FLAG:
        return bytes([jt808.FLAG]) + jt808.escape(raw[1:-1]) + bytes([jt808.FLAG])
    if vec.get("form") == "no_flags":
        return bytes([jt808.FLAG]) + raw + bytes([jt808.FLAG])
    return raw


class Result:
    """What our code made of one vector."""

    def __init__(self, vec: dict[str, Any]) -> None:
        self.vec = vec
        self.stage = ""  # "" = decoded; else frame / body / fix / session
        self.reason = ""
        self.header: jt808.Header | None = None
        self.message: Any = None
        self.json: dict[str, Any] | None = None
        self.fixes: list[Fix | DecodeError] = []
        self.session: list[str] = []
        self.mismatches: list[str] = []
        self.emqx_diffs: list[str] = []  # vs the JSON the EMQX test asserts
        self.observed_diffs: list[str] = []  # vs what EMQX's parser produced

    def fail(self, stage: str, reason: str) -> None:
        if not self.stage:
            self.stage, self.reason = stage, reason

    @property
    def status(self) -> str:
        return "OK" if not self.stage else f"{self.stage}:{self.reason}"


def run(vec: dict[str, Any]) -> Result:
    res = Result(vec)
    form = vec.get("form", "wire")
    try:
        if form == "body_only":
            _body_only(res)
        else:
            _framed(res, wire_bytes(vec))
        if res.message is not None and res.header is not None and res.header.msg_id in LOCATION_IDS:
            _locations(res)
        compare(res)
    except Exception as exc:  # the survey must report, never stop
        res.fail("crash", f"{type(exc).__name__}: {exc}")
    return res


def _body_only(res: Result) -> None:
    vec = res.vec
    edition: jt808.Edition = 2019 if vec.get("edition") == "2019" else 2013
    body = bytes.fromhex(vec["hex"])
    res.header = jt808.Header(vec["msg_id"], "0", 0, edition, body_len=len(body))
    _body(res, res.header, body)


def _framed(res: Result, data: bytes) -> None:
    splitter = jt808.FrameSplitter()
    items = splitter.feed(data) + splitter.close()
    frames = [i for i in items if isinstance(i, jt808.Frame)]
    errors = [i for i in items if isinstance(i, jt808.FrameError)]
    session = Jt808Session(Jt808Settings(auth_code="", require_auth=False), now=NOW)
    res.session = [o.reason for o in session.receive(data, NOW)]
    if not frames:
        res.fail("frame", errors[0].reason if errors else "no_frame")
        if errors and errors[0].header is not None:
            res.header = errors[0].header
        return
    if len(frames) > 1 or errors:
        res.mismatches.append(f"framing: {len(frames)} frames, errors {[e.reason for e in errors]}")
    frame = frames[0]
    res.header = frame.header
    if frame.header.frag_total is not None:
        whole = jt808.Reassembler().add(frame)
        if whole is None:
            res.fail("frame", "fragment_alone")
            return
        if isinstance(whole, jt808.FrameError):
            res.fail("frame", whole.reason)
            return
        frame = whole
    _body(res, frame.header, frame.body)


def _body(res: Result, header: jt808.Header, body: bytes) -> None:
    message = m.decode_body(header, body)
    if isinstance(message, jt808.FrameError):
        res.fail("body", message.reason)
        return
    if isinstance(message, m.Unknown):
        res.fail("body", "unsupported")
    res.message = message
    res.json = m.emqx_json(header, message)


def _locations(res: Result) -> None:
    assert res.json is not None
    body = res.json["body"]
    items = body.get("location", []) if res.header and res.header.msg_id == jt808.LOCATION_BATCH else [body]
    for i, item in enumerate(items):
        fix = decode_location("V", item, now=NOW, limits=LIMITS, index=i)
        res.fixes.append(fix)
    bad = [f for f in res.fixes if isinstance(f, DecodeError)]
    if bad:
        res.fail("fix", bad[0].reason)


# --- comparison ------------------------------------------------------------


def _digits_time(value: Any) -> str | None:
    """Any time the sources give -> BCD-style YYMMDDhhmmss digits."""
    if not isinstance(value, str):
        return None
    digits = re.sub(r"\D", "", value)
    if len(digits) == 14:
        return digits[2:]
    return digits if len(digits) == 12 else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _close(a: Any, b: Any, tol: float = 1e-6) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), abs_tol=tol)
    return bool(a == b)


def _fix_checks(
    res: Result, exp: dict[str, Any], fix: Fix | DecodeError | None, loc: dict[str, Any] | None, where: str
) -> None:
    """Location keys of ``expect`` against one Fix and its EMQX-shaped body."""
    keys = ("lat", "lon", "speed_kmh", "course", "altitude_m", "satellites", "mileage_km", "valid", "time_utc")
    wanted = [k for k in keys if k in exp]
    label = where or "location"
    if (wanted or "time" in exp or "alarm" in exp or "status" in exp) and loc is None:
        res.mismatches.append(f"{label}: no location decoded")
        return
    if loc is not None:
        for key, field in (("alarm", "alarm"), ("status", "status")):
            if key in exp and loc.get(field) != exp[key]:
                res.mismatches.append(f"{where}{key}: ours {loc.get(field)} != {exp[key]}")
        if "time" in exp:
            want = _digits_time(exp["time"])
            if want is not None and loc.get("time") != want:
                res.mismatches.append(f"{where}time: ours {loc.get('time')} != {exp['time']}")
    if not wanted:
        return
    if not isinstance(fix, Fix):
        reason = fix.reason if isinstance(fix, DecodeError) else "none"
        res.mismatches.append(f"{label}: no Fix ({reason}) for {wanted}")
        return
    ours = {
        "lat": fix.lat, "lon": fix.lon, "speed_kmh": fix.speed_kmh, "course": fix.heading,
        "altitude_m": fix.alt_m, "satellites": fix.sats, "mileage_km": fix.mileage_km,
        "valid": not fix.flags & FixFlag.INVALID, "time_utc": _iso(fix.ts),
    }  # fmt: skip
    for key in wanted:
        if not _close(ours[key], exp[key]):
            res.mismatches.append(f"{where}{key}: ours {ours[key]} != {exp[key]}")


def compare(res: Result) -> None:
    exp = res.vec.get("expect", {})
    h = res.header
    if h is not None and res.vec.get("form") != "body_only":
        if "phone" in exp and normalize_phone(h.phone) != normalize_phone(str(exp["phone"])):
            res.mismatches.append(f"phone: ours {h.phone} != {exp['phone']}")
        if "msg_sn" in exp and h.msg_sn != exp["msg_sn"]:
            res.mismatches.append(f"msg_sn: ours {h.msg_sn} != {exp['msg_sn']}")
        if "proto_ver" in exp and h.edition == 2019 and h.proto_ver != exp["proto_ver"]:
            res.mismatches.append(f"proto_ver: ours {h.proto_ver} != {exp['proto_ver']}")
    msg = res.message
    body_json = res.json["body"] if res.json else None
    if h is not None and h.msg_id == jt808.LOCATION:
        _fix_checks(res, exp, res.fixes[0] if res.fixes else None, body_json, "")
    elif h is not None and h.msg_id == jt808.LOCATION_BATCH:
        locs = body_json.get("location", []) if body_json else []
        if "batch_count" in exp and len(locs) != exp["batch_count"]:
            res.mismatches.append(f"batch_count: ours {len(locs)} != {exp['batch_count']}")
        if "batch_type" in exp and body_json is not None and body_json.get("type") != exp["batch_type"]:
            res.mismatches.append(f"batch_type: ours {body_json.get('type')} != {exp['batch_type']}")
        for i, item in enumerate(exp.get("items", [])):
            fix = res.fixes[i] if i < len(res.fixes) else None
            loc = locs[i] if i < len(locs) else None
            _fix_checks(res, item, fix, loc, f"items[{i}].")
    if "auth_code" in exp:
        code = getattr(msg, "code", None) if isinstance(msg, m.Authenticate) else getattr(msg, "auth_code", None)
        if code != exp["auth_code"]:
            res.mismatches.append(f"auth_code: ours {code!r} != {exp['auth_code']!r}")
    for key, attr in (("imei", "imei"), ("software_version", "software_version")):
        if key in exp and isinstance(msg, m.Authenticate) and getattr(msg, attr) != exp[key]:
            res.mismatches.append(f"{key}: ours {getattr(msg, attr)!r} != {exp[key]!r}")
    if "traccar_check" in exp:
        _traccar(res, exp)
    if "emqx_json" in exp and res.json is not None:
        res.emqx_diffs = diff(exp["emqx_json"], res.json)
    elif "emqx_json" in exp:
        res.emqx_diffs = [f"(not decoded by us): {res.status}"]
    if "emqx_observed" in res.vec and res.json is not None:
        res.observed_diffs = diff(res.vec["emqx_observed"], res.json)


def _traccar(res: Result, exp: dict[str, Any]) -> None:
    """traccar returns a Position for most messages; only locations are ours to match."""
    check = exp["traccar_check"]
    fixes = [f for f in res.fixes if isinstance(f, Fix)]
    if res.vec.get("msg_id") not in LOCATION_IDS:
        return
    if check in ("verifyPosition", "verifyPositions", "verifyAttribute") and not fixes:
        what = exp["traccar_attribute"]["key"] if check == "verifyAttribute" else ""
        res.mismatches.append(f"traccar {check}{f'({what})' if what else ''}: traccar gives a position, we give none")
    if check == "verifyNull" and fixes:
        res.mismatches.append("traccar verifyNull: traccar gives no position, we give one")


def diff(want: Any, ours: Any, path: str = "") -> list[str]:
    """Paths where ``ours`` differs from ``want`` (EMQX's JSON)."""
    out: list[str] = []
    if isinstance(want, dict) and "$bin" in want and len(want) == 1:
        want = bytes.fromhex(want["$bin"]).decode("latin-1")
    if isinstance(want, dict) and isinstance(ours, dict):
        for k in sorted(set(want) | set(ours)):
            p = f"{path}.{k}" if path else k
            if k not in ours:
                out.append(f"{p}: missing in ours")
            elif k not in want:
                out.append(f"{p}: extra in ours")
            else:
                out += diff(want[k], ours[k], p)
        return out
    if isinstance(want, list) and isinstance(ours, list):
        if len(want) != len(ours):
            return [f"{path}: {len(ours)} items != {len(want)}"]
        for i, (a, b) in enumerate(zip(want, ours, strict=True)):
            out += diff(a, b, f"{path}[{i}]")
        return out
    if want != ours:
        return [f"{path}: ours {_short(ours)} != {_short(want)}"]
    return out


def _short(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 60 else s[:57] + "..."


# --- report ----------------------------------------------------------------


def _slug(vec: dict[str, Any]) -> str:
    return str(vec["id"]).rsplit("-", 1)[0]


def _diff_kind(d: str) -> str:
    """Group an EMQX diff path: drop indexes and values."""
    path = d.split(":", 1)[0]
    path = re.sub(r"\[\d+\]", "[]", path)
    what = d.split(":", 1)[1].strip() if ":" in d else ""
    if what.startswith("ours"):
        what = "value differs"
    return f"{path} ({what})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--summary", action="store_true", help="print only the summary")
    ap.add_argument("--source", help="only vectors of this source slug (emqx, traccar, ...)")
    args = ap.parse_args()
    vectors = [v for v in load() if not args.source or _slug(v) == args.source]
    results = [run(v) for v in vectors]
    if not args.summary:
        for r in results:
            v = r.vec
            mid = f"0x{v['msg_id']:04x}" if isinstance(v.get("msg_id"), int) else "-"
            line = f"{v['id']:<15} {mid} {v.get('form', 'wire'):<9} {r.status}"
            if r.session:
                line += f"  session={','.join(r.session)}"
            print(line)
            for mm in r.mismatches:
                print(f"    mismatch {mm}")
            for d in r.emqx_diffs:
                print(f"    emqx_json {d}")
            for d in r.observed_diffs:
                print(f"    emqx_observed {d}")
    summary(results)
    return 0


def summary(results: list[Result]) -> None:
    print("\n== summary ==")
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        c = by_source[_slug(r.vec)]
        c["total"] += 1
        c[_outcome(r)] += 1
        c["with_mismatch"] += bool(r.mismatches)
    by_source["all"] = sum(by_source.values(), Counter())
    print("decoded: framing and body read (and a Fix for every location); unsupported: a message id")
    print("our decoder does not know (answered 0x8001 result 3); failed: any other rejection")
    for slug, c in sorted(by_source.items(), key=lambda kv: kv[0] == "all"):
        print(
            f"{slug:<10} total {c['total']:>4}  decoded {c['decoded']:>4}  unsupported {c['unsupported']:>4}"
            f"  failed {c['failed']:>4}  with mismatches {c['with_mismatch']:>4}"
        )
    print("\nfailures by stage:reason (msg ids)")
    fails: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        if r.stage and _outcome(r) == "failed":
            mid = r.vec.get("msg_id")
            fails[r.status][f"0x{mid:04x}" if isinstance(mid, int) else "-"] += 1
    for status, ids in sorted(fails.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"  {status:<28} {sum(ids.values()):>4}  {dict(ids.most_common(8))}")
    unsupported = Counter(r.vec.get("msg_id") for r in results if _outcome(r) == "unsupported")
    print("\nunsupported message ids (id: count)")
    print("  " + ", ".join(f"0x{k:04x} {n}" for k, n in sorted(unsupported.items())))
    print("\nmismatches against expect (kind: count)")
    kinds = Counter(re.sub(r"items\[\d+\]\.", "items[].", mm.split(":", 1)[0]) for r in results for mm in r.mismatches)
    for k, n in kinds.most_common():
        print(f"  {k:<40} {n:>4}")
    print("\nEMQX JSON differences, vs emqx_json asserted by EMQX tests (path: vectors)")
    _print_diffs([r for r in results if r.emqx_diffs], "emqx_diffs")
    print("\nEMQX JSON differences, vs emqx_observed (EMQX's parser output) (path: vectors)")
    _print_diffs([r for r in results if r.observed_diffs], "observed_diffs")
    print("\nsession outcomes (reason: count)")
    print("  " + ", ".join(f"{k} {n}" for k, n in Counter(s for r in results for s in r.session).most_common()))


def _outcome(r: Result) -> str:
    if not r.stage:
        return "decoded"
    return "unsupported" if r.status == "body:unsupported" else "failed"


def _print_diffs(results: list[Result], attr: str) -> None:
    kinds: Counter[str] = Counter()
    for r in results:
        for k in {_diff_kind(d) for d in getattr(r, attr)}:
            kinds[k] += 1
    for k, n in kinds.most_common():
        print(f"  {k:<70} {n:>4}")


if __name__ == "__main__":
    sys.exit(main())
