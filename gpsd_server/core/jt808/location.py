"""0x0200 location reports and 0x0704 batches, in both directions. Pure.

The JSON is the EMQX gateway's, key for key (``docs/emqx-jt808-json.md``):
the 28 fixed bytes as integers, ``time`` as the BCD digits, additional
items in ``extra`` under EMQX's names. Where EMQX drops a frame that still
carries a good position, we keep the position and name the quirk:

==================  ==========================================================
extra_malformed     an additional item runs past the body, a stray last byte,
                    or 0x11 with a length other than 1 or 5 (EMQX drops the
                    frame). Items before it are kept; a bad 0x11 is published
                    as ``"17"`` base64 like any known id of the wrong length.
batch_truncated     a 0x0704 item runs past the body, or the count names more
                    items than there are: the complete items are kept.
batch_count         more items than the count field says: all are read
                    (``length`` still publishes the count field, as EMQX).
batch_bad_item      an item shorter than 28 bytes: skipped, the others kept.
==================  ==========================================================

One EMQX behaviour is not copied because it is a bug: for item 0xE0 EMQX
publishes ``custome`` as a base64 string and then parses the item's value
bytes again as further items. Ours puts 0xE0 in the ``custome`` object under
``"224"``, like 0xE1-0xFF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.codec import BodyReader, b64, nibbles, u
from gpsd_server.core.jt808.frame import Edition

LOCATION_FIXED_BYTES = 28
EXTRA_MILEAGE = 0x01
EXTRA_SATELLITES = 0x31
BATCH_NORMAL = 0
BATCH_BACKFILL = 1  # blind-area backfill: positions stored while offline

# Additional items (id: (EMQX key, length)) that are plain unsigned integers.
_EXTRA_INTEGERS: dict[int, tuple[str, int]] = {
    0x01: ("mileage", 4),  # 0.1 km
    0x02: ("fuel_meter", 2),  # 0.1 L
    0x03: ("speed", 2),  # tachograph speed, 0.1 km/h
    0x04: ("alarm_id", 2),
    0x30: ("rssi", 1),
    0x31: ("gnss_sat_num", 1),
}
# 0x25, as EMQX reads it: these 15 names from the most significant bit down
# (bit 31 = low_beam ... bit 17 = cluth, sic); bits 16-0 are not published.
# JT/T 808 numbers the same signals from bit 0: EMQX's order is kept so that
# both gateways publish the same object for the same bytes.
SIGNAL_BITS = (
    "low_beam", "high_beam", "right_turn", "left_turn", "brake", "reverse", "fog", "side_marker",
    "horn", "air_conditioner", "neutral", "retarder", "abs", "heater", "cluth",
)  # fmt: skip
CUSTOM_FIRST = 0xE0


@dataclass(frozen=True, slots=True)
class Location:
    """0x0200 body: the 28 fixed bytes plus additional items (id, raw value)."""

    msg_id: ClassVar[int] = jt808.LOCATION
    alarm: int
    status: int
    latitude: int  # degrees x 10^6, unsigned; status bit 2 means south
    longitude: int  # degrees x 10^6, unsigned; status bit 3 means west
    altitude: int  # metres
    speed: int  # 0.1 km/h
    direction: int  # degrees, 0-359
    time: str  # BCD YYMMDDhhmmss, Beijing time (nibbles as sent, not checked here)
    extras: tuple[tuple[int, bytes], ...] = ()
    edition: Edition = 2013  # which item rules apply (0x05 / 0x06 are 2019 items)
    quirks: tuple[str, ...] = ()

    def encode(self, edition: Edition = 2013) -> bytes:
        out = bytearray()
        for value, size in (
            (self.alarm, 4), (self.status, 4), (self.latitude, 4), (self.longitude, 4),
            (self.altitude, 2), (self.speed, 2), (self.direction, 2),
        ):  # fmt: skip
            out += value.to_bytes(size, "big")
        out += jt808.bcd_encode(self.time, 6)
        for item_id, raw in self.extras:
            out += bytes([item_id, len(raw)]) + raw
        return bytes(out)

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013) -> Location | None:
        if len(body) < LOCATION_FIXED_BYTES:
            return None
        r = BodyReader(body)
        alarm, status, lat, lon = r.uint(4), r.uint(4), r.uint(4), r.uint(4)
        alt, speed, direction = r.uint(2), r.uint(2), r.uint(2)
        time = nibbles(r.take(6))
        extras, complete = read_extras(r)
        quirks = () if complete and _odd_overspeed(extras) is None else ("extra_malformed",)
        return cls(alarm, status, lat, lon, alt, speed, direction, time, extras, edition, quirks)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alarm": self.alarm,
            "status": self.status,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "altitude": self.altitude,
            "speed": self.speed,
            "direction": self.direction,
            "time": self.time,
        }
        if self.extras or "extra_malformed" in self.quirks:
            out["extra"] = extras_to_json(self.extras, self.edition)
        return out


def _odd_overspeed(extras: tuple[tuple[int, bytes], ...]) -> int | None:
    return next((i for i, (item_id, v) in enumerate(extras) if item_id == 0x11 and len(v) not in (1, 5)), None)


def read_extras(r: BodyReader) -> tuple[tuple[tuple[int, bytes], ...], bool]:
    """Additional items to the end of the body, and whether they ended cleanly.

    A malformed tail (an item longer than what is left, a stray byte) ends
    the list: the position before it is still good, and losing it would be
    worse."""
    items: list[tuple[int, bytes]] = []
    while r.left >= 2:
        item_id, size = r.uint(1), r.uint(1)
        value = r.take(size)
        if r.short:
            return tuple(items), False
        items.append((item_id, value))
    return tuple(items), r.left == 0


def extras_to_json(extras: tuple[tuple[int, bytes], ...], edition: Edition = 2013) -> dict[str, Any]:
    """Additional items as EMQX names them; unknown ids as base64 by decimal id."""
    out: dict[str, Any] = {}
    for item_id, value in extras:
        size = len(value)
        known = _EXTRA_INTEGERS.get(item_id)
        if known is not None and size == known[1]:
            out[known[0]] = u(value)
        elif item_id == 0x05 and edition == 2019:
            out["tire_pressure"] = b64(value)
        elif item_id == 0x06 and edition == 2019 and size == 2:
            out["carriage_temp"] = int.from_bytes(value, "big", signed=True)
        elif item_id == 0x11 and size in (1, 5):
            alarm: dict[str, int] = {"type": value[0]}
            out["overspeed_alarm"] = alarm | ({"id": u(value[1:5])} if size == 5 else {})
        elif item_id == 0x12 and size == 6:
            out["in_out_alarm"] = {"type": value[0], "id": u(value[1:5]), "direction": value[5]}
        elif item_id == 0x13 and size == 7:
            out["path_time_alarm"] = {"id": u(value[0:4]), "time": u(value[4:6]), "result": value[6]}
        elif item_id == 0x25 and size == 4:
            word = u(value)
            out["signal"] = {name: word >> (31 - i) & 1 for i, name in enumerate(SIGNAL_BITS)}
        elif item_id == 0x2A and size == 2:
            out["io_status"] = {"deep_sleep": value[0] >> 7 & 1, "sleep": value[0] >> 6 & 1}
        elif item_id == 0x2B and size == 4:
            out["analog"] = {"ad0": u(value[2:4]), "ad1": u(value[0:2])}
        elif item_id >= CUSTOM_FIRST:
            out.setdefault("custome", {})[str(item_id)] = b64(value)
        else:
            out[str(item_id)] = b64(value)
    return out


@dataclass(frozen=True, slots=True)
class LocationBatch:
    """0x0704: count WORD, type BYTE, then (length WORD, 0x0200 body) items.

    ``count`` is the count field as sent; ``items`` every item that could be
    read (see ``batch_*`` in the module docstring)."""

    msg_id: ClassVar[int] = jt808.LOCATION_BATCH
    kind: int
    items: tuple[Location, ...]
    count: int | None = None  # None: len(items)
    quirks: tuple[str, ...] = ()

    def encode(self, edition: Edition = 2013) -> bytes:
        count = len(self.items) if self.count is None else self.count
        out = bytearray(count.to_bytes(2, "big") + bytes([self.kind]))
        for item in self.items:
            body = item.encode(edition)
            out += len(body).to_bytes(2, "big") + body
        return bytes(out)

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013) -> LocationBatch | None:
        if len(body) < 3:
            return None
        r = BodyReader(body)
        count, kind = r.uint(2), r.uint(1)
        items: list[Location] = []
        quirks: set[str] = set()
        seen = 0
        while r.left >= 2:
            size = r.uint(2)
            raw = r.take(size)
            if r.short:
                quirks.add("batch_truncated")
                break
            seen += 1
            item = Location.decode(raw, edition)
            if item is None:
                quirks.add("batch_bad_item")
                continue
            items.append(item)
            quirks.update(item.quirks)
        if r.left:
            quirks.add("batch_truncated")  # a stray byte after the last item
        if seen > count:
            quirks.add("batch_count")
        elif seen < count:
            quirks.add("batch_truncated")
        if not items:
            return None
        return cls(kind, tuple(items), count, tuple(sorted(quirks)))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "length": len(self.items) if self.count is None else self.count,
            "location": [item.to_json() for item in self.items],
        }
