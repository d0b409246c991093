"""The wire's rounding of live positions (multiply, floor, divide; see ``wire._to``)."""

from __future__ import annotations

import math
import random

import msgspec

from gpsd_server import wire


def test_live_positions_round_to_the_nearest_seventh_decimal_as_round_does_but_for_the_last_unit() -> None:
    rng = random.Random(7)
    differ = 0
    for _ in range(200_000):
        lon, lat = rng.uniform(73, 135), rng.uniform(-90, 90)
        speed, heading = rng.uniform(0, 120), rng.uniform(0, 360)
        row = msgspec.json.decode(wire.position_row("V", 1.0, lon, lat, speed, heading, "x"))
        assert abs(row[4] - speed) <= 0.05 + 1e-9 and abs(row[5] - heading) <= 0.5 and row[5] == int(row[5])
        for got, exact in ((row[2], round(lon, 7)), (row[3], round(lat, 7))):
            assert abs(got - exact) <= 1.0000001e-7
            differ += got != exact
        assert len(repr(row[2]).split(".")[1]) <= 7
    assert differ <= 5  # about one in a million


def test_a_row_and_a_position_round_alike_and_keep_what_is_missing() -> None:
    """Halves go up (``round`` sent 36.05 to 36.0 and 70.5 to 70: display only)."""
    row = msgspec.json.decode(wire.position_row("V", 1.0, 112.93123455, 28.5, 36.05, 70.5, "muck_truck"))
    pos = wire.Position.of("V", 1.0, 112.93123455, 28.5, 36.05, 70.5, plate=None, vehicle_class="x", moving_kmh=5)
    assert row[2:6] == [pos.lon, pos.lat, pos.speed, pos.heading] == [112.9312346, 28.5, 36.1, 71.0]
    assert msgspec.json.decode(wire.position_row("V", 1.0, math.nan, 28.5, None, None, "x"))[2:6] == [
        None,
        28.5,
        None,
        None,
    ]
