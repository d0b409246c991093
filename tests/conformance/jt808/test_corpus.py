"""The public JT/T 808 conformance corpus (SOURCES.md) against our code.

551 vectors from four independent projects: EMQX's gateway test suites,
traccar's decoder tests (real devices), SmallChi/JT808 and
yezhihao/jt808-server. Each check below runs every vector it applies to:

* header fields (phone, sequence number, protocol version) as the source reads them;
* every location: the Fix values the source asserts;
* every terminal message: the reply JT/T 808 prescribes (0x8100 for register
  in the 2011, 2013 and 2019 layouts, 0x8001 result 3 for unknown ids, to
  the right phone, sequence number and edition, nothing for answers...);
* the JSON we publish equals the JSON EMQX's tests assert, and the JSON EMQX's
  own parser produced for its test frames, except where EMQX is wrong (its
  0xE0 re-parse bug) or drops a frame we keep (listed, with the reason);
* downlinks: our 0x8001 / 0x8100 / 0x8004 / 0x8103 / 0x8201 / 0x8300 from
  EMQX's downlink JSON are EMQX's bytes, and the other sources' downlink
  frames decode to their values and encode back to their bytes.

Where a source's expectation cannot hold for a standard-conforming reader,
the expectation is recorded here as it is, with the reason, never loosened:
yezhihao's location bean has the longitude in the latitude field (out of
range: rejected), SmallChi writes southern/western coordinates as signed
raw values (the standard's are unsigned with the hemisphere in the status
bits: out of range, rejected), and both have synthetic speeds and
altitudes past the range checks.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gpsd_server.core.decode.jt808 import decode_location, normalize_phone
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.codec import clean
from gpsd_server.core.jt808.frame import Frame, FrameError, Header
from gpsd_server.core.jt808.session import Jt808Session, Outcome
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import IngestSettings, Jt808Settings

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
# The vectors' fix times span 2014..2026 and some are synthetic: decoding is
# what is checked here, so the age/future window is opened wide.
LIMITS = IngestSettings(max_age_days=1e11 / 86400, max_future_s=1e11)
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, any fixed time
AUTH_CODE = "corpus-808"


def _load() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(VECTORS_DIR.glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


VECTORS = _load()
BY_ID = {v["id"]: v for v in VECTORS}


def source(vec: dict[str, Any]) -> str:
    return str(vec["id"]).rsplit("-", 1)[0]


def vectors(predicate: Any) -> list[Any]:
    return [pytest.param(v, id=v["id"]) for v in VECTORS if predicate(v)]


def framed_up(v: dict[str, Any]) -> bool:
    return v["direction"] == "up" and v["form"] in ("wire", "unescaped", "stream", "text")


# --- running one vector ---------------------------------------------------------


def wire_bytes(vec: dict[str, Any]) -> bytes:
    raw = bytes.fromhex(vec["hex"]) if vec["form"] != "text" else vec["hex"].encode()
    if vec["form"] == "unescaped" and len(raw) >= 2 and raw[0] == raw[-1] == jt808.FLAG:
        return bytes([jt808.FLAG]) + jt808.escape(raw[1:-1]) + bytes([jt808.FLAG])
    return raw


@dataclass
class Run:
    """What our code made of one vector."""

    items: list[Frame | FrameError] = field(default_factory=list)
    header: Header | None = None
    message: m.Message | FrameError | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    encoding: str = "utf8"

    @property
    def json(self) -> dict[str, Any] | None:
        if self.header is None or self.message is None or isinstance(self.message, FrameError):
            return None
        return m.emqx_json(self.header, self.message)

    def locations(self) -> list[dict[str, Any]]:
        doc = self.json
        if doc is None:
            return []
        body, msg_id = doc["body"], doc["header"]["msg_id"]
        if msg_id == jt808.LOCATION_BATCH:
            return list(body["location"])
        if msg_id in (0x0201,):
            return [body["params"]]
        if msg_id in (0x0500, 0x0801):
            return [body["location"]]
        if msg_id == 0x0802:
            return [r["location"] for r in body["result"]]
        return [body] if msg_id == jt808.LOCATION else []

    def fixes(self) -> list[Fix | DecodeError]:
        return [decode_location("V", loc, now=NOW, limits=LIMITS, index=i) for i, loc in enumerate(self.locations())]


def settings(encoding: str = "utf8") -> Jt808Settings:
    # Decoding is what is checked: a gateway that takes any terminal, with
    # EMQX's default string encoding unless a test says otherwise.
    return Jt808Settings(auth_code="", require_auth=False, string_encoding=encoding)  # type: ignore[arg-type]


def encoding_of(vec: dict[str, Any]) -> str:
    """EMQX's tests run with its default string encoding (UTF-8); the Chinese
    projects write GBK, as the standard says."""
    return "utf8" if source(vec) == "emqx" else "gbk"


def run(vec: dict[str, Any], encoding: str | None = None) -> Run:
    encoding = encoding or encoding_of(vec)
    res = Run(encoding=encoding)
    if vec["form"] == "body_only":
        edition: jt808.Edition = 2019 if vec["edition"] == "2019" else 2013
        body = bytes.fromhex(vec["hex"])
        res.header = Header(vec["msg_id"], "0", 0, edition, body_len=len(body))
        res.message = m.decode_body(res.header, body, encoding=encoding)  # type: ignore[arg-type]
        return res
    data = wire_bytes(vec)
    splitter = jt808.FrameSplitter()
    res.items = splitter.feed(data) + splitter.close()
    session = Jt808Session(settings(encoding), now=NOW)
    res.outcomes = session.receive(data, NOW) + session.eof()
    frames = [i for i in res.items if isinstance(i, Frame)]
    if frames:
        frame = frames[0]
        res.header = frame.header
        if frame.header.frag_total is None:
            res.message = m.decode_body(frame.header, frame.body, encoding=encoding)  # type: ignore[arg-type]
    else:
        errors = [i for i in res.items if isinstance(i, FrameError)]
        res.header = errors[0].header if errors else None
        res.message = errors[0] if errors else None
    return res


# --- what the sources' expectations become ----------------------------------------

# Location vectors whose source expectation a standard reader cannot meet:
# the reason our decoder gives instead, and why. Recorded, never loosened.
_SWAPPED = "yezhihao's location bean puts Beijing's longitude (116.3) in the latitude field: out of range"
_SIGNED = "SmallChi writes south/west as negative raw values; JT/T 808 coordinates are unsigned: out of range"
_SYNTHETIC_SPEED = "synthetic values: speed 1000.1 km/h is past the 400 km/h bound of every input path"
# Positions refused ("position_invalid": read as a NOFIX fix, see below) or
# fixes rejected outright, and why.
FIX_REJECTED: dict[str, tuple[str, str]] = {
    "yezhihao-015": ("position_invalid", _SWAPPED),
    "yezhihao-016": ("position_invalid", _SWAPPED),
    "yezhihao-025": ("position_invalid", _SWAPPED),
    "yezhihao-026": ("position_invalid", _SWAPPED),
    "yezhihao-137": ("position_invalid", _SWAPPED),
    "yezhihao-138": ("position_invalid", _SWAPPED),
    "yezhihao-131": ("speed_out_of_range", _SYNTHETIC_SPEED),
    "yezhihao-132": ("speed_out_of_range", _SYNTHETIC_SPEED),
    **{f"smallchi-0{n}": ("position_invalid", _SIGNED) for n in (47, 48, 49, 50, 52, 53)},
}

# Bodies in a layout nobody else reads either: the reason, and why.
NOT_READ = {
    "smallchi-087": ("bad_body", "0x0802 in the 2011 layout (no multimedia id): EMQX drops it too"),
}

_FIX_KEYS = ("lat", "lon", "speed_kmh", "course", "altitude_m", "satellites", "mileage_km", "valid", "time_utc")


def _digits_time(value: Any) -> str | None:
    digits = re.sub(r"\D", "", str(value))
    return digits[2:] if len(digits) == 14 else digits if len(digits) == 12 else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fix_values(fix: Fix) -> dict[str, Any]:
    return {
        "lat": fix.lat, "lon": fix.lon, "speed_kmh": fix.speed_kmh, "course": fix.heading, "altitude_m": fix.alt_m,
        "satellites": fix.sats, "mileage_km": fix.mileage_km, "valid": not fix.flags & FixFlag.INVALID,
        "time_utc": _iso(fix.ts),
    }  # fmt: skip


def assert_location(expect: dict[str, Any], loc: dict[str, Any], fix: Fix | DecodeError, where: str) -> None:
    for key in ("alarm", "status"):
        if key in expect:
            assert loc[key] == expect[key], f"{where}{key}"
    if "time" in expect:
        assert loc["time"] == _digits_time(expect["time"]), f"{where}time"
    wanted = {k: expect[k] for k in _FIX_KEYS if k in expect}
    if not wanted:
        return
    assert isinstance(fix, Fix), f"{where}: no Fix ({fix})"
    ours = fix_values(fix)
    for key, value in wanted.items():
        if isinstance(value, float) or isinstance(ours[key], float):
            assert math.isclose(ours[key], value, abs_tol=1e-6), f"{where}{key}: {ours[key]} != {value}"
        else:
            assert ours[key] == value, f"{where}{key}: {ours[key]} != {value}"


def has_location_expectation(v: dict[str, Any]) -> bool:
    e = v["expect"]
    return any(k in e for k in (*_FIX_KEYS, "items", "alarm", "time"))


# --- 1. everything is read, nothing crashes -----------------------------------------


@pytest.mark.parametrize("vec", vectors(lambda v: True))
def test_every_vector_is_read_and_every_outcome_named(vec: dict[str, Any]) -> None:
    res = run(vec)
    if vec["form"] == "body_only" or vec["direction"] == "down":
        assert res.header is not None
        return
    if vec["form"] in ("stream", "text") and not res.items:
        # Bytes holding no frame (noise, an ASCII line): nothing is answered
        # or published, and the splitter keeps at most max_frame_bytes of it.
        assert all(o.reply is None and o.publish is None for o in res.outcomes)
        return
    assert res.outcomes, "a terminal's bytes always come out as counted outcomes"
    for outcome in res.outcomes:
        assert re.fullmatch(r"[a-z_0-9]+", outcome.reason)
        assert all(re.fullmatch(r"[a-z_0-9]+", q) for q in outcome.tolerated)


# --- 2. header fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    "vec", vectors(lambda v: v["form"] != "body_only" and any(k in v["expect"] for k in ("phone", "msg_sn")))
)
def test_header_fields_as_the_source_reads_them(vec: dict[str, Any]) -> None:
    exp, res = vec["expect"], run(vec)
    assert res.header is not None
    if "phone" in exp:
        assert normalize_phone(res.header.phone) == normalize_phone(str(exp["phone"]))
    if "msg_sn" in exp:
        assert res.header.msg_sn == exp["msg_sn"]
    if "proto_ver" in exp and res.header.edition == 2019:
        assert res.header.proto_ver == exp["proto_ver"]


# --- 3. locations: the source's Fix values -----------------------------------------------


@pytest.mark.parametrize("vec", vectors(lambda v: v["direction"] == "up" and has_location_expectation(v)))
def test_location_gives_the_sources_fix_values(vec: dict[str, Any]) -> None:
    exp, res = vec["expect"], run(vec)
    if vec["id"] in NOT_READ:
        reason, why = NOT_READ[vec["id"]]
        assert isinstance(res.message, FrameError) and res.message.reason == reason, why
        return
    locs, fixes = res.locations(), res.fixes()
    assert locs, f"no location decoded: {res.message}"
    if vec["id"] in FIX_REJECTED:
        reason, why = FIX_REJECTED[vec["id"]]
        if reason == "position_invalid":
            # An impossible position in a location report: its alarm and status
            # words still count, so it becomes a NOFIX fix (alarms raised at the
            # last known position), never a track point.
            assert fixes and all(isinstance(f, Fix) and f.flags & FixFlag.NOFIX for f in fixes), why
        else:
            bad = [f for f in fixes if isinstance(f, DecodeError)]
            assert bad and {f.reason for f in bad} == {reason}, why
        # The bytes are read as the source wrote them: only the Fix is refused.
        signed = "signed_lat_lon" in vec["quirks"]
        for e, loc in zip(exp.get("items", [exp]), locs, strict=False):
            lat = round(e["lat"] * 1e6) & 0xFFFFFFFF if signed else round(abs(e["lat"]) * 1e6)
            assert loc["latitude"] == lat, why
        return
    if vec["msg_id"] == 0x0802:
        # SmallChi's 0x0802 tests assert both search results; the translated
        # keys hold the last one's (equal but for the time).
        assert_location(exp, locs[-1], fixes[-1], "result[-1].")
        return
    if "items" in exp:
        assert len(locs) == exp.get("batch_count", len(exp["items"]))
        if "batch_type" in exp:
            assert res.json is not None and res.json["body"]["type"] == exp["batch_type"]
        for i, item in enumerate(exp["items"]):
            assert_location(item, locs[i], fixes[i], f"items[{i}].")
        return
    assert_location(exp, locs[0], fixes[0], "")


def test_rejections_are_recorded_for_every_vector_they_name() -> None:
    for vid, (_, why) in FIX_REJECTED.items():
        vec = BY_ID[vid]
        assert has_location_expectation(vec), vid
        tag = "position_out_of_range" if "yezhihao" in why else "signed_lat_lon" if "SmallChi" in why else ""
        assert not tag or tag in vec["quirks"], f"{vid}: {why}"


# --- 4. replies: what the standard prescribes -------------------------------------------

# JT/T 808-2013 §8 / 2019 §8, per terminal message id: the platform's answer.
GENERAL_OK = frozenset(
    (0x0002, 0x0003, 0x0005, 0x0108, 0x0200, 0x0301, 0x0303, 0x0701, 0x0702, 0x0704, 0x0705, 0x0800, 0x0900,
     0x0901, 0x0A00)
)  # fmt: skip
ANSWERS = frozenset((0x0001, 0x0104, 0x0107, 0x0201, 0x0302, 0x0500, 0x0608, 0x0700, 0x0802, 0x0805))
OWN_ANSWER = {0x0100: 0x8100, 0x0102: 0x8001, 0x0004: 0x8004, 0x0801: 0x8800}


def decoded_reply(data: bytes | None) -> tuple[Header, dl.Downlink | None] | None:
    if data is None:
        return None
    [frame] = jt808.FrameSplitter().feed(data)
    assert isinstance(frame, Frame)
    return frame.header, dl.decode_downlink(frame.header, frame.body)


def prescribed(header: Header, message: m.Message | FrameError) -> tuple[int, int | None] | None:
    """(answer id, 0x8001 result) the standard prescribes; None for no answer."""
    if isinstance(message, FrameError):
        return (jt808.PLATFORM_RESPONSE, m.RESULT_MESSAGE_ERROR)
    if header.msg_id in ANSWERS:
        return None
    if header.msg_id in OWN_ANSWER:
        answer = OWN_ANSWER[header.msg_id]
        return (answer, m.RESULT_OK if answer == jt808.PLATFORM_RESPONSE else None)
    if header.msg_id in GENERAL_OK:
        return (jt808.PLATFORM_RESPONSE, m.RESULT_OK)
    return (jt808.PLATFORM_RESPONSE, m.RESULT_UNSUPPORTED)


@pytest.mark.parametrize("vec", vectors(framed_up))
def test_reply_is_what_the_standard_prescribes(vec: dict[str, Any]) -> None:
    res = run(vec)
    outcomes = iter(res.outcomes)
    phone = None
    for item in res.items:
        if isinstance(item, FrameError) and item.header is None:
            outcome = next(outcomes)
            assert outcome.reply is None, "no answer without a header to address it to"
            continue
        header = item.header
        assert header is not None
        phone = phone or header.phone
        outcome = next(outcomes)
        if isinstance(item, Frame) and header.frag_total is not None:
            want: tuple[int, int | None] | None = (jt808.PLATFORM_RESPONSE, m.RESULT_OK)  # each packet acknowledged
        elif isinstance(item, Frame):
            want = prescribed(header, m.decode_body(header, item.body))
        else:
            want = prescribed(header, item)
        reply = decoded_reply(outcome.reply)
        if want is None:
            assert reply is None, f"{header.msg_id:#06x} is an answer: answered {reply}"
            continue
        assert reply is not None, f"{header.msg_id:#06x}: no answer, {outcome}"
        rheader, answer = reply
        assert (rheader.phone, rheader.edition, rheader.proto_ver) == (header.phone, header.edition, header.proto_ver)
        assert rheader.msg_id == want[0]
        if isinstance(answer, dl.PlatformResponse):
            assert (answer.reply_sn, answer.reply_id, answer.result) == (header.msg_sn, header.msg_id, want[1])
        elif isinstance(answer, dl.RegisterResponse):
            assert (answer.reply_sn, answer.result) == (header.msg_sn, m.RESULT_OK)
        else:
            assert want[0] in (dl.SERVER_TIME, dl.MEDIA_ACK)


@pytest.mark.parametrize("vec", vectors(lambda v: v["direction"] == "up" and v["msg_id"] == jt808.REGISTER))
def test_register_in_every_layout_gets_0x8100_with_the_auth_code(vec: dict[str, Any]) -> None:
    session = Jt808Session(Jt808Settings(auth_code=AUTH_CODE), now=NOW)
    outcomes = [o for o in session.receive(wire_bytes(vec), NOW) if not o.dropped]
    if vec["id"] in _REGISTER_NOT_A_FRAME:
        assert not outcomes, _REGISTER_NOT_A_FRAME[vec["id"]]
        return
    [outcome] = outcomes
    reply = decoded_reply(outcome.reply)
    assert reply is not None
    answer = reply[1]
    assert isinstance(answer, dl.RegisterResponse)
    assert (answer.result, answer.auth_code) == (m.RESULT_OK, AUTH_CODE)
    if vec["edition"] == "2011":
        assert outcome.tolerated == ("register_2011",)


_REGISTER_NOT_A_FRAME = {
    "traccar-083": "bad checksum (traccar does not check checksums): dropped, answered 0x8001 result 2",
}


# --- lenient reading, strict accounting --------------------------------------------------

# SOURCES.md quirk tags (read off the bytes) -> the tolerated quirk we count.
QUIRK_NAMES = {
    "non_bcd_phone": "non_bcd_phone",
    "version_bit_2013": "version_bit",
    "length_mismatch": "length_mismatch",
    "extra_item_overruns_body": "extra_malformed",
    "register_2011_layout": "register_2011",
    "truncated_batch_item": "batch_truncated",
}


@pytest.mark.parametrize(
    "vec",
    vectors(lambda v: framed_up(v) and "bad_checksum" not in v["quirks"] and set(v["quirks"]) & set(QUIRK_NAMES)),
)
def test_quirks_are_read_and_counted(vec: dict[str, Any]) -> None:
    res = run(vec)
    tolerated = {q for o in res.outcomes for q in o.tolerated}
    assert not any(o.dropped for o in res.outcomes), [o.reason for o in res.outcomes]
    for tag in set(vec["quirks"]) & set(QUIRK_NAMES):
        assert QUIRK_NAMES[tag] in tolerated, tag


# --- register and authenticate fields --------------------------------------------------

_REGISTER_KEYS = ("province", "city", "manufacturer", "model", "device_id", "plate_color", "plate")


@pytest.mark.parametrize(
    "vec", vectors(lambda v: v["direction"] == "up" and any(k in v["expect"] for k in (*_REGISTER_KEYS, "auth_code")))
)
def test_register_and_authenticate_fields(vec: dict[str, Any]) -> None:
    exp, res = vec["expect"], run(vec)
    message = res.message
    if isinstance(message, m.Register):
        ours = {
            "province": message.province, "city": message.city, "manufacturer": clean(message.manufacturer),
            "model": message.model_text, "device_id": clean(message.device_id), "plate_color": message.plate_color,
            "plate": message.plate_text,
        }  # fmt: skip
        assert {k: ours[k] for k in _REGISTER_KEYS if k in exp} == {k: exp[k] for k in _REGISTER_KEYS if k in exp}
        return
    assert isinstance(message, m.Authenticate)
    assert message.code_text == exp["auth_code"]
    for key in ("imei", "software_version"):
        if key in exp:
            assert getattr(message, key) == exp[key]


def test_smallchi_2011_register_fields() -> None:
    # SmallChi's Test2011_2 asserts these on its 2011-layout register.
    message = run(BY_ID["smallchi-013"]).message
    assert isinstance(message, m.Register) and message.layout == 2011
    assert (message.province, message.city, clean(message.manufacturer)) == (40, 50, "1234")
    assert (message.model_text, clean(message.device_id), message.plate_color) == ("tk12345", "CHI123", 1)
    assert message.plate_text == "粤A12345"


# --- 5. the JSON we publish is EMQX's -------------------------------------------------

# Paths where our JSON differs from EMQX's on the same frame, and why: only
# where EMQX is wrong, or drops a frame whose good part we keep.
EMQX_DIFFERENCES: dict[str, dict[str, str]] = {}


def diff(want: Any, ours: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(ours, dict):
        out: list[str] = []
        for k in sorted(set(want) | set(ours)):
            p = f"{path}.{k}" if path else k
            if k not in ours or k not in want:
                out.append(p)
            else:
                out += diff(want[k], ours[k], p)
        return out
    if isinstance(want, list) and isinstance(ours, list) and len(want) == len(ours):
        return [d for i, (a, b) in enumerate(zip(want, ours, strict=True)) for d in diff(a, b, f"{path}[{i}]")]
    return [] if want == ours else [path]


def published(res: Run) -> dict[str, Any] | None:
    """The JSON our gateway puts on the broker, decoded back."""
    doc = res.json
    return None if doc is None else msgspec.json.decode(msgspec.json.encode(doc))


@pytest.mark.parametrize("vec", vectors(lambda v: v["direction"] == "up" and "emqx_json" in v["expect"]))
def test_json_equals_what_emqx_tests_assert(vec: dict[str, Any]) -> None:
    ours = published(run(vec))
    assert ours is not None
    assert diff(vec["expect"]["emqx_json"], ours) == sorted(EMQX_DIFFERENCES.get(vec["id"], {}))


@pytest.mark.parametrize("vec", vectors(lambda v: v["direction"] == "up" and "emqx_observed" in v))
def test_json_equals_what_emqx_parser_produced(vec: dict[str, Any]) -> None:
    ours = published(run(vec))
    assert ours is not None
    assert diff(vec["emqx_observed"], ours) == sorted(EMQX_DIFFERENCES.get(vec["id"], {}))


_STRING_ASSERTS = {
    "ParsedLicense": "license_number", "ParsedName": "driver_name", "ReceivedDriverName": "driver_name",
    "ParsedOrg": "organization", "ReceivedOrg": "organization", "ParsedIdCard": "id_card",
}  # fmt: skip


def string_asserts(v: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in v["expect"].get("emqx_asserts", []) if a["expr"] in _STRING_ASSERTS]


@pytest.mark.parametrize("vec", vectors(lambda v: v["direction"] == "up" and string_asserts(v)))
def test_strings_in_either_encoding_as_emqx_reads_them(vec: dict[str, Any]) -> None:
    # EMQX's string_encoding tests: "gbk" converts GBK, the default passes UTF-8 through.
    encoding = "gbk" if "gbk" in vec["source"]["test"] else "utf8"
    ours = published(run(vec, encoding))
    assert ours is not None
    for a in string_asserts(vec):
        assert ours["body"][_STRING_ASSERTS[a["expr"]]] == a["equals"], a


# --- 6. EMQX's replies --------------------------------------------------------------------


@pytest.mark.parametrize("vec", vectors(lambda v: "emqx_reply_hex" in v["expect"]))
def test_reply_matches_emqx_apart_from_its_sequence_counter(vec: dict[str, Any]) -> None:
    expected = decoded_reply(bytes.fromhex(vec["expect"]["emqx_reply_hex"]))
    assert expected is not None
    code = expected[1].auth_code if isinstance(expected[1], dl.RegisterResponse) else ""
    session = Jt808Session(Jt808Settings(auth_code=code, require_auth=False), now=NOW)
    [outcome] = [o for o in session.receive(wire_bytes(vec), NOW) if o.reply is not None]
    ours = decoded_reply(outcome.reply)
    assert ours is not None
    (eh, ebody), (oh, obody) = expected, ours
    assert (oh.msg_id, oh.phone, oh.edition, oh.proto_ver) == (eh.msg_id, eh.phone, eh.edition, eh.proto_ver)
    assert obody == ebody


# --- 7. downlinks -------------------------------------------------------------------------

OUR_DOWNLINKS = (0x8001, 0x8004, 0x8100, 0x8103, 0x8201, 0x8300)


def emqx_downlink(doc: dict[str, Any]) -> tuple[Header, dl.Downlink]:
    head, body = doc["header"], doc.get("body", {})
    edition: jt808.Edition = 2019 if "proto_ver" in head else 2013
    msg_id = head["msg_id"]
    message: dl.Downlink
    if msg_id == 0x8001:
        message = dl.PlatformResponse.from_json(body)
    elif msg_id == 0x8100:
        message = dl.RegisterResponse.from_json(body)
    elif msg_id == 0x8004:
        message = dl.ServerTime(body["time"])
    else:
        message = dl.command_from_json(msg_id, body, edition)
    header = Header(msg_id, head.get("phone", "000123456789"), head.get("msg_sn", 2), edition, head.get("proto_ver", 1))
    return header, message


@pytest.mark.parametrize(
    "vec", vectors(lambda v: v["direction"] == "down" and source(v) == "emqx" and v["msg_id"] in OUR_DOWNLINKS)
)
def test_our_downlink_bytes_are_emqxs(vec: dict[str, Any]) -> None:
    header, message = emqx_downlink(vec["expect"]["emqx_dn_json"])
    data = jt808.encode_frame(header, message.encode(header.body_edition, "utf8"))
    assert data.hex() == vec["hex"]


@pytest.mark.parametrize(
    "vec",
    vectors(lambda v: v["direction"] == "down" and source(v) != "emqx" and v["msg_id"] in (*OUR_DOWNLINKS, 0x8800)),
)
def test_other_sources_downlinks_decode_and_encode_back(vec: dict[str, Any]) -> None:
    if vec["form"] == "body_only":
        edition: jt808.Edition = 2019 if vec["edition"] == "2019" else 2013
        body = bytes.fromhex(vec["hex"])
        frame = Frame(Header(vec["msg_id"], "0", 0, edition), body)
    else:
        [frame] = [i for i in jt808.FrameSplitter().feed(wire_bytes(vec)) if isinstance(i, Frame)]
    message = dl.decode_downlink(frame.header, frame.body, "gbk")
    assert message is not None
    exp = vec["expect"]
    if isinstance(message, dl.PlatformResponse):
        for key in ("reply_sn", "reply_id", "result"):
            if key in exp:
                assert getattr(message, key) == exp[key]
    if isinstance(message, dl.RegisterResponse) and "auth_code" in exp:
        assert message.auth_code == exp["auth_code"]
    again = jt808.encode_frame(frame.header, message.encode(frame.header.body_edition, "gbk"))
    if vec["id"] in ENCODED_DIFFERENTLY:
        assert message == ENCODED_DIFFERENTLY[vec["id"]][0], ENCODED_DIFFERENTLY[vec["id"]][1]
        return
    assert again == jt808.encode_frame(frame.header, frame.body)


_NO_COUNT = "SmallChi writes 0x8800 without the count byte when nothing is to be resent; we write count 0"
ENCODED_DIFFERENTLY: dict[str, tuple[dl.Downlink, str]] = {
    "smallchi-111": (dl.MediaAck(129), _NO_COUNT),
    "smallchi-112": (dl.MediaAck(129), _NO_COUNT),
}


# --- 8. traccar's real devices ----------------------------------------------------------------

# traccar decodes positions out of vendor protocols that share the JT/T 808
# framing (0x5501/0x5502 locks, 0x0210, 0x0900 vendor payloads, ...). A
# standard platform answers those ids "not supported" (or passes 0x0900 on
# as data) and makes no position: recorded per vector.
_UNCHECKED = "bad checksum: dropped and answered 0x8001 result 2 (traccar does not verify checksums)"
TRACCAR_NO_FIX: dict[str, str] = {
    vid: _UNCHECKED for vid in ("traccar-059", "traccar-088", "traccar-109", "traccar-110")
}


@pytest.mark.parametrize("vec", vectors(lambda v: source(v) == "traccar" and v["msg_id"] is not None))
def test_traccar_positions(vec: dict[str, Any]) -> None:
    exp, res = vec["expect"], run(vec)
    check = exp["traccar_check"]
    fixes = [f for f in res.fixes() if isinstance(f, Fix)]
    standard = vec["msg_id"] in (jt808.LOCATION, jt808.LOCATION_BATCH)
    if check == "verifyNull" or not standard:
        assert not fixes or standard
        return
    if vec["id"] in TRACCAR_NO_FIX:
        assert "bad_checksum" in vec["quirks"] and not fixes, TRACCAR_NO_FIX[vec["id"]]
        assert [o.reason for o in res.outcomes] == ["bad_checksum"]
        return
    if "zero_position" in vec["quirks"]:
        # A terminal without a fix reports 0,0: kept out of the track, its alarm words still count.
        nofix = [f for f in fixes if f.flags & FixFlag.NOFIX]
        assert nofix and all(f.lon == f.lat == 0.0 for f in nofix), "0,0 must be a NOFIX fix"
        return
    assert fixes, f"traccar gives a position: ours {res.message} {res.fixes()}"
    if "satellites" in exp:
        assert fixes[0].sats == exp["satellites"]


# --- 9. the corpus is what SOURCES.md says ---------------------------------------------------


def test_corpus_has_at_least_150_vectors_from_three_sources() -> None:
    per_source = Counter(source(v) for v in VECTORS)
    assert per_source == {"emqx": 161, "traccar": 116, "smallchi": 136, "yezhihao": 138}
    assert len(VECTORS) == 551
