"""Terminal messages the platform passes on without acting on them, read into
the ``body`` object EMQX's JT/T 808 gateway publishes (docs/emqx-jt808-json.md,
"Other uplink bodies"). Pure.

Each reader takes the body bytes, the body edition and the string encoding
and returns the JSON object, or ``None`` when the body does not have the
layout (the session answers 0x8001 "message error" and drops it). Every
field name, type and base64 choice is EMQX's. Where EMQX requires an exact
length and a terminal sends a longer body, the tail is ignored; a shorter
body is malformed for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpsd_server.core.jt808.codec import BodyReader, Encoding, b64, nibbles, raw_text, strip_tail_zeros, text, u
from gpsd_server.core.jt808.frame import Edition
from gpsd_server.core.jt808.location import LOCATION_FIXED_BYTES, Location
from gpsd_server.core.jt808.params import decode_param_value

Json = dict[str, Any]
Reader = Callable[[bytes, Edition, Encoding], Json | None]


def _location(raw: bytes, edition: Edition) -> Json | None:
    loc = Location.decode(raw, edition)
    return None if loc is None else loc.to_json()


def fragment_request(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0005 (2019)
    r = BodyReader(body)
    seq, count = r.uint(2), r.uint(2)
    ids = [r.uint(2) for _ in range(min(count, r.left // 2))]
    return None if r.short or len(ids) < count else {"seq": seq, "count": count, "ids": ids}


def parameters(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0104
    r = BodyReader(body)
    seq, count = r.uint(2), r.uint(1)
    params: list[Json] = []
    for _ in range(count):
        param_id, size = r.uint(4), r.uint(1)
        raw = r.take(size)
        if r.short:
            return None
        params.append({"id": param_id, "value": decode_param_value(param_id, raw, encoding)})
    return None if r.short else {"seq": seq, "length": count, "params": params}


def attributes(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0107
    model_len, id_len = (30, 30) if edition == 2019 else (20, 7)
    r = BodyReader(body)
    kind, manufacturer = r.uint(2), r.take(5)
    model, dev_id, iccid = r.take(model_len), r.take(id_len), r.take(10)
    hardware = r.take(r.uint(1))
    firmware = r.take(r.uint(1))
    gnss, comm = r.uint(1), r.uint(1)
    if r.short:
        return None
    return {
        "type": kind,
        "manufacturer": raw_text(manufacturer),
        "model": raw_text(strip_tail_zeros(model)),
        "id": raw_text(strip_tail_zeros(dev_id)),
        "iccid": nibbles(iccid),
        "hardware_version": raw_text(hardware),
        "firmware_version": raw_text(firmware),
        "gnss_prop": gnss,
        "comm_prop": comm,
    }


def upgrade_result(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0108
    return {"type": body[0], "result": body[1]} if len(body) >= 2 else None


def position_answer(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0201
    params = _location(body[2:], edition)
    return None if params is None else {"seq": u(body[0:2]), "params": params}


def event_report(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0301
    return {"id": body[0]} if body else None


def question_answer(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0302
    return {"seq": u(body[0:2]), "id": body[2]} if len(body) >= 3 else None


def info_on_demand(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0303
    return {"id": body[0], "flag": body[1]} if len(body) >= 2 else None


def vehicle_control_answer(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0500
    location = _location(body[2:], edition)
    return None if location is None else {"seq": u(body[0:2]), "location": location}


def areas_answer(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0608 (2019)
    if len(body) < 5:
        return None
    return {"type": body[0], "count": u(body[1:5]), "data": b64(body[5:])}


def tachograph_data(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0700
    if len(body) < 3:
        return None
    return {"seq": u(body[0:2]), "command": body[2], "data": b64(body[3:])}


def waybill(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0701, 0x0901
    return {"length": u(body[0:4]), "data": b64(body[4:])} if len(body) >= 4 else None


def driver_identity(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0702
    r = BodyReader(body)
    status, time = r.uint(1), r.take(6)
    if r.short:
        return None
    out: Json = {"status": status, "time": nibbles(time)}
    if status != 1:
        return out
    ic_result = r.uint(1)
    if r.short:
        return None
    out["ic_result"] = ic_result
    if ic_result != 0:
        return out
    name = r.take(r.uint(1))
    certificate = r.take(20)
    organization = r.take(r.uint(1))
    expiry = r.take(4)
    id_card = r.take(20) if edition == 2019 else b""
    if r.short:
        return None
    out |= {
        "driver_name": text(name, encoding),
        "certificate": raw_text(certificate),
        "organization": text(organization, encoding),
        "cert_expiry": nibbles(expiry),
    }
    if edition == 2019:
        out["id_card"] = raw_text(strip_tail_zeros(id_card))
    return out


def can_data(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0705
    r = BodyReader(body)
    count, time = r.uint(2), r.take(5)
    items: list[Json] = []
    for _ in range(count):
        word, data = r.uint(4), r.take(8)
        if r.short:
            return None
        items.append(
            {"channel": word >> 31, "frame_type": word >> 30 & 1, "data_method": word >> 29 & 1,
             "id": word & 0x1FFFFFFF, "data": b64(data)}
        )  # fmt: skip
    return None if r.short else {"length": count, "time": nibbles(time), "can_data": items}


def media_event(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0800
    if len(body) < 8:
        return None
    return {"id": u(body[0:4]), "type": body[4], "format": body[5], "event": body[6], "channel": body[7]}


def media_data(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0801
    head = media_event(body, edition, encoding)
    location = _location(body[8 : 8 + LOCATION_FIXED_BYTES], edition)
    if head is None or location is None:
        return None
    return head | {"location": location, "multimedia": b64(body[8 + LOCATION_FIXED_BYTES :])}


def media_search_answer(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0802
    r = BodyReader(body)
    seq, count = r.uint(2), r.uint(2)
    found: list[Json] = []
    for _ in range(count):
        media_id, kind, channel, event = r.uint(4), r.uint(1), r.uint(1), r.uint(1)
        location = _location(r.take(LOCATION_FIXED_BYTES), edition)
        if r.short or location is None:
            return None
        found.append({"id": media_id, "type": kind, "channel": channel, "event": event, "location": location})
    return None if r.short else {"seq": seq, "length": count, "result": found}


def camera_answer(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0805
    r = BodyReader(body)
    seq, result = r.uint(2), r.uint(1)
    if r.short:
        return None
    if result != 0:
        return {"seq": seq, "result": result}
    count = r.uint(2)
    ids = [r.uint(4) for _ in range(count)]
    return None if r.short else {"seq": seq, "result": result, "length": count, "ids": ids}


def pass_through(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0900
    return {"type": body[0], "data": b64(body[1:])} if body else None


def rsa_key(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0A00
    return {"e": u(body[0:4]), "n": b64(body[4:132])} if len(body) >= 132 else None


def empty(body: bytes, edition: Edition, encoding: Encoding) -> Json | None:  # 0x0004 (2019)
    return {}


READERS: dict[int, Reader] = {
    0x0004: empty,
    0x0005: fragment_request,
    0x0104: parameters,
    0x0107: attributes,
    0x0108: upgrade_result,
    0x0201: position_answer,
    0x0301: event_report,
    0x0302: question_answer,
    0x0303: info_on_demand,
    0x0500: vehicle_control_answer,
    0x0608: areas_answer,
    0x0700: tachograph_data,
    0x0701: waybill,
    0x0702: driver_identity,
    0x0705: can_data,
    0x0800: media_event,
    0x0801: media_data,
    0x0802: media_search_answer,
    0x0805: camera_answer,
    0x0900: pass_through,
    0x0901: waybill,
    0x0A00: rsa_key,
}

# Answers to a platform command (EMQX acks its in-flight command with them;
# the standard wants no 0x8001 for them): uplink id -> the command ids it answers.
ANSWERS: dict[int, tuple[int, ...]] = {
    0x0104: (0x8104, 0x8106),
    0x0107: (0x8107,),
    0x0201: (0x8201,),
    0x0302: (0x8302,),
    0x0500: (0x8500,),
    0x0608: (0x8608,),
    0x0700: (0x8700,),
    0x0802: (0x8802,),
    0x0805: (0x8801,),
}
