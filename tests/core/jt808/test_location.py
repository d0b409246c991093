"""0x0200 additional items and 0x0704 batches: EMQX's JSON, and what is kept
where a terminal's bytes are bent."""

from __future__ import annotations

import struct

from gpsd_server.core.jt808.location import SIGNAL_BITS, Location, LocationBatch, extras_to_json

FIXED = struct.pack(">IIIIHHH", 0, 3, 22_543_100, 114_057_900, 12, 356, 90) + bytes.fromhex("240506070809")


def test_named_items_like_emqx() -> None:
    extras = (
        (0x02, b"\x01\x00"),
        (0x11, b"\x01" + struct.pack(">I", 7)),
        (0x12, b"\x02" + struct.pack(">I", 9) + b"\x01"),
        (0x13, struct.pack(">IHB", 5, 300, 1)),
        (0x2A, b"\xc0\x00"),
        (0x2B, struct.pack(">HH", 11, 22)),
        (0xE1, b"\xde\xad"),
        (0x77, b"\x01"),
        (0x01, b"\x00\x01"),  # a known id of the wrong length: by number, like any other
    )
    assert extras_to_json(extras) == {
        "fuel_meter": 256,
        "overspeed_alarm": {"type": 1, "id": 7},
        "in_out_alarm": {"type": 2, "id": 9, "direction": 1},
        "path_time_alarm": {"id": 5, "time": 300, "result": 1},
        "io_status": {"deep_sleep": 1, "sleep": 1},
        "analog": {"ad0": 22, "ad1": 11},
        "custome": {"225": "3q0="},
        "119": "AQ==",
        "1": "AAE=",
    }


def test_signal_object_is_read_from_the_top_bit_down_as_emqx_does() -> None:
    low_beam = extras_to_json(((0x25, b"\x80\x00\x00\x00"),))["signal"]
    assert low_beam == {name: int(name == "low_beam") for name in SIGNAL_BITS}
    assert len(SIGNAL_BITS) == 15 and SIGNAL_BITS[-1] == "cluth"
    # Bits 16-0 are not part of EMQX's object.
    assert set(extras_to_json(((0x25, b"\x00\x01\xff\xff"),))["signal"].values()) == {0}


def test_tire_pressure_and_signed_carriage_temperature_are_2019_items() -> None:
    extras = ((0x05, b"def"), (0x06, b"\xff\xec"))
    assert extras_to_json(extras, 2019) == {"tire_pressure": "ZGVm", "carriage_temp": -20}
    assert extras_to_json(extras, 2013) == {"5": "ZGVm", "6": "/+w="}


def test_0xe0_goes_into_custome_not_emqxs_reparse() -> None:
    # EMQX publishes "custome": "MAEJ" and then reads 30 01 09 again as rssi 9
    # (it parses the item's value as further items): a bug we do not copy.
    assert extras_to_json(((0xE0, b"\x30\x01\x09"),)) == {"custome": {"224": "MAEJ"}}


def test_a_malformed_tail_keeps_the_position_and_the_items_before_it() -> None:
    for tail in (b"\x01\x04\x00", b"\x30"):  # item longer than the body, a stray byte
        loc = Location.decode(FIXED + b"\x31\x01\x0c" + tail)
        assert loc is not None
        assert (loc.latitude, loc.extras, loc.quirks) == (22_543_100, ((0x31, b"\x0c"),), ("extra_malformed",))
        assert loc.to_json()["extra"] == {"gnss_sat_num": 12}


def test_overspeed_item_of_another_length_is_kept_by_number() -> None:
    loc = Location.decode(FIXED + b"\x11\x02\x01\x02")
    assert loc is not None and loc.quirks == ("extra_malformed",)
    assert loc.to_json()["extra"] == {"17": "AQI="}


def item(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def test_batch_with_a_truncated_last_item_keeps_the_good_ones() -> None:
    body = struct.pack(">HB", 3, 1) + item(FIXED) + item(FIXED) + item(FIXED)[:-5]
    batch = LocationBatch.decode(body)
    assert batch is not None
    assert (len(batch.items), batch.count, batch.quirks) == (2, 3, ("batch_truncated",))
    assert batch.to_json()["length"] == 3  # the count field, as EMQX publishes it


def test_batch_with_more_items_than_its_count_reads_them_all() -> None:
    batch = LocationBatch.decode(struct.pack(">HB", 1, 0) + item(FIXED) + item(FIXED))
    assert batch is not None and (len(batch.items), batch.quirks) == (2, ("batch_count",))


def test_batch_item_too_short_is_skipped() -> None:
    batch = LocationBatch.decode(struct.pack(">HB", 2, 0) + item(FIXED[:20]) + item(FIXED))
    assert batch is not None and (len(batch.items), batch.quirks) == (1, ("batch_bad_item",))


def test_batch_without_any_good_item_is_not_a_batch() -> None:
    assert LocationBatch.decode(struct.pack(">HB", 1, 0) + item(FIXED)[:-1]) is None
    assert LocationBatch.decode(b"\x00") is None
