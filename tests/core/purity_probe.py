"""Run the pure core with clocks, files and sockets taken away (run by test_purity.py
in a fresh interpreter: ``python tests/core/purity_probe.py``).

Before the core is imported, ``datetime.datetime`` and ``date`` become
subclasses whose ``now``/``utcnow``/``today`` raise. Once every input is
built, ``time``'s clocks, ``open`` (builtins, io, os), pathlib's file
methods and ``socket.socket`` raise too. Then the core does real work:
decodes every input path, runs a JT/T 808 terminal conversation, loads a
city, drives vehicles through every rule, ticks, restores, and computes
history. Any clock read or I/O in there fails the probe.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import numpy as np  # noqa: E402
import pyproj  # noqa: E402,F401
import shapely  # noqa: E402,F401


class Forbidden(AssertionError):
    pass


def forbid(what: str) -> Any:
    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise Forbidden(f"the pure core used {what}")

    return blocked


class GuardedDatetime(dt.datetime):
    now = classmethod(forbid("datetime.now"))  # type: ignore[assignment]
    utcnow = classmethod(forbid("datetime.utcnow"))  # type: ignore[assignment]
    today = classmethod(forbid("datetime.today"))  # type: ignore[assignment]


class GuardedDate(dt.date):
    today = classmethod(forbid("date.today"))  # type: ignore[assignment]


dt.datetime = GuardedDatetime  # type: ignore[misc]
dt.date = GuardedDate  # type: ignore[misc]

import gpsd_server.core  # noqa: E402

for info in pkgutil.walk_packages(gpsd_server.core.__path__, prefix="gpsd_server.core."):
    importlib.import_module(info.name)

from gpsd_server.core.cases import GENESIS, CaseBook, CaseFacts, audit_digest  # noqa: E402
from gpsd_server.core.city import Road  # noqa: E402
from gpsd_server.core.decode import Decoder, TopicRouter  # noqa: E402
from gpsd_server.core.engine import Engine  # noqa: E402
from gpsd_server.core.gazetteer import Gazetteer  # noqa: E402
from gpsd_server.core.geo import Projection  # noqa: E402
from gpsd_server.core.history import find_stops, simplify_indices, track_stats, zone_visits  # noqa: E402
from gpsd_server.core.history_city import CityShapes, check_trip  # noqa: E402
from gpsd_server.core.jt808 import frame  # noqa: E402
from gpsd_server.core.jt808.session import Jt808Session  # noqa: E402
from gpsd_server.core.places import Places  # noqa: E402
from gpsd_server.core.roadnet import RoadNetwork  # noqa: E402
from gpsd_server.core.rules.base import OpenAlert  # noqa: E402
from gpsd_server.model import Fix, Sensors  # noqa: E402
from gpsd_server.settings import CaseSettings, IngestSettings, Jt808Settings, RuleSettings  # noqa: E402
from tests.fixtures import city as test_city  # noqa: E402

# -- inputs, built before the guards ----------------------------------------------------
GEOFENCES = test_city.collection(*test_city.city_features())
VEHICLES = json.dumps(test_city.VEHICLES)
NOW = test_city.NIGHT + 3600
POINTS = [test_city.lonlat(x, y) for x, y in ((-200, 0), (300, 0), (1200, 0), (2500, 1500), (5200, 0))]


def jt808_frames() -> list[bytes]:
    register = frame.encode_frame(frame.Header(frame.REGISTER, "013800138000", 1), bytes(37))
    auth = frame.encode_frame(frame.Header(frame.AUTHENTICATE, "013800138000", 2), b"gpsd-808")
    return [register, auth]


FRAMES = jt808_frames()
from shapely.geometry import LineString  # noqa: E402

ROADS = (
    Road("r1", "环城路", LineString([POINTS[0], POINTS[2]]), 50.0),
    Road("r2", "辐射路", LineString([POINTS[1], POINTS[3]])),
)

# -- the guards ------------------------------------------------------------------------------
import builtins  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep"):
    setattr(time, name, forbid(f"time.{name}"))
builtins.open = forbid("open")
io.open = forbid("io.open")
os.open = forbid("os.open")
for name in ("open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file", "is_dir", "stat"):
    setattr(pathlib.Path, name, forbid(f"Path.{name}"))
socket.socket = forbid("socket.socket")  # type: ignore[misc]

# -- the work ----------------------------------------------------------------------------------
decoder = Decoder(TopicRouter(), IngestSettings(), jt808_auto_register=True)
city = test_city.load_city([("city.geojson", GEOFENCES)], ("vehicles.json", VEHICLES))
decoder.use_city(city)
lon, lat = POINTS[1]
native = msgspec.json.encode([{"ts": NOW - 60 + i, "lon": lon, "lat": lat, "speed_kmh": 20.0} for i in range(3)])
decoded = decoder.decode("fleet/MT-001/fix", native, NOW)
decoded += decoder.decode("owntracks/a/b", b'{"_type":"location","lat":28.57,"lon":112.35,"tst":1709560000}', NOW)
decoded += decoder.decode("fleet/MT-001/fix", b"not json", NOW)
assert any(isinstance(d, Fix) for d in decoded), decoded

session = Jt808Session(Jt808Settings(auth_code=""))
outcomes = [o for data in FRAMES for o in session.receive(data)]
assert outcomes and session.phone is not None

engine = Engine(city=city, settings=RuleSettings(), tz=test_city.TZ)
fixes: list[Fix] = []
t = test_city.NIGHT
for i in range(600):
    lon, lat = POINTS[(i // 120) % len(POINTS)]
    sensors = Sensors(loaded=True, cover_closed=i % 200 > 20, lift=i % 150 == 7, drum=None)
    for vid in ("MT-001", "MX-001", "PT-001"):
        fixes.append(Fix(vid, t, lon, lat, received_at=t, speed_kmh=float(i % 70), alarm=1 if i % 97 < 5 else 0,
                         sensors=sensors))  # fmt: skip
    t += 10
events = []
for k in range(0, len(fixes), 50):
    events += engine.process(fixes[k : k + 50], now=t).events
events += engine.tick(t + 3600)
assert events, "the scenario raised nothing"
engine.restore("MT-001", fixes[-3], [OpenAlert("overspeed", "overspeed", "warning", t - 100, *POINTS[0])])

projection = Projection(32649)
ts = np.array([f.ts for f in fixes if f.vehicle_id == "MT-001"])
lons = np.array([f.lon for f in fixes if f.vehicle_id == "MT-001"])
lats = np.array([f.lat for f in fixes if f.vehicle_id == "MT-001"])
speed = np.array([f.speed_kmh or 0.0 for f in fixes if f.vehicle_id == "MT-001"])
x, y = projection.to_xy(lons, lats)
stats = track_stats(ts, lons, lats, speed, moving_kmh=5.0, gap_s=300.0)
stops = find_stops(ts, x, y, lons, lats, radius_m=50.0, min_s=300.0)
simplify_indices(x, y, 10.0)
zone_visits([z.geometry for z in city.zones], [("MT-001", ts, lons, lats)], gap_s=300.0)
shapes = CityShapes(city, engine.build_geometry(city))
from gpsd_server.core.history import find_trips  # noqa: E402

for trip in find_trips(ts, lons, lats, speed, stops, moving_kmh=5.0, gap_s=300.0):
    check_trip(shapes, list(city.vehicles["MT-001"].permits), trip, ts, lons, lats, tz=test_city.TZ,
               settings=RuleSettings())  # fmt: skip

# 12319 cases: the book's deadlines and arrival, the road network, addresses, the seal.
book = CaseBook(CaseSettings(normal_dispatch_s=60.0), moving_kmh=5.0)
lon, lat = POINTS[2]
case = CaseFacts(id=1, number="20240304-0001", priority="normal", category="other", lon=lon, lat=lat,
                 state="accepted", accepted_at=test_city.NIGHT)  # fmt: skip
events += book.tick(test_city.NIGHT + 120)
book.put(msgspec.structs.replace(case, state="dispatched", vehicle_id="PT-001", dispatched_at=t - 6000,
                                 assigned_at=t - 6000))  # fmt: skip
findings, ended = book.observe([f for f in fixes if f.vehicle_id == "PT-001"])
events += ended
network = RoadNetwork(ROADS, projection)
legs = network.legs(POINTS[1], POINTS[2:], road_speed_kmh=35.0, city_speed_kmh=25.0, road_factor=1.3,
                    snap_max_m=1500.0, paths=1)  # fmt: skip
assert legs and Gazetteer(city).search("CS1") and Places(city, projection).locate(*POINTS[1]) is not None
audit_digest(GENESIS, case_id=1, seq=1, kind="created", at_us=1, by="x", comment="", data={})
print("ok", len(events), "events", round(stats.distance_km, 1), "km", len(findings), "findings")
