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


def test_many_rows_at_once_are_the_same_bytes_as_one_by_one() -> None:
    """The hub rounds a large flush with numpy (``position_rows``): byte for byte
    what ``position_row`` writes, missing values, NaN and infinities included."""
    rng = random.Random(11)
    odd = [None, math.nan, math.inf, -math.inf, 0.0, -0.04, 0.05, 0.45, 359.5, 1e-9]
    cols: list[list[object]] = [[], [], [], [], [], [], []]
    for i in range(20_000):
        values = (
            f"V{i}",
            rng.uniform(1.6e9, 1.8e9),
            rng.choice([rng.uniform(73, 135), math.nan, 112.00000005, -179.99999995]),
            rng.uniform(-90, 90),
            rng.choice([rng.uniform(0, 400), *odd]),
            rng.choice([rng.uniform(0, 360), *odd]),
            rng.choice(["muck_truck", "patrol"]),
        )
        for col, v in zip(cols, values, strict=True):
            col.append(v)
    one_by_one = [wire.position_row(*row) for row in zip(*cols, strict=True)]  # type: ignore[arg-type]
    assert wire.position_rows(*cols) == one_by_one  # type: ignore[arg-type]
