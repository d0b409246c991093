"""The page's GCJ-02 / BD-09 conversion (gpsd_server/web/js/coords.js), run
under node: both directions against published points, round trips < 1 m, and
identity outside mainland China.

Reference points are the test vectors that independent implementations
publish (eviltransform's WGS-84 -> GCJ-02 cities; coordtransform's
Tian'anmen values for GCJ-02 <-> BD-09 and WGS-84 -> GCJ-02), with lon, lat
order made explicit here to catch the classic swap."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

from tests.fixtures.services import REPO

MODULE = REPO / "gpsd_server" / "web" / "js" / "coords.js"
NODE = shutil.which("node") or "node"  # tools/web_setup.sh installs it; a missing one fails loudly

# (lon, lat) WGS-84 -> (lon, lat) GCJ-02
WGS_TO_GCJ = [
    ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),  # Shanghai
    ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),  # Shenzhen
    ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),  # Beijing
    ((116.404, 39.915), (116.41024449916938, 39.91640428150164)),  # Tian'anmen
]
# (lon, lat) GCJ-02 -> (lon, lat) BD-09
GCJ_TO_BD = [((116.404, 39.915), (116.41036949371029, 39.92133699351021))]
# (lon, lat) BD-09 -> (lon, lat) GCJ-02 (closed-form approximate inverse; ours iterates: within 0.1 m)
BD_TO_GCJ = [((116.404, 39.915), (116.39762729119315, 39.90865673957631))]
# (lon, lat) GCJ-02 -> (lon, lat) WGS-84 (iterated inverse)
GCJ_TO_WGS = [((116.404, 39.915), (116.39775550083061, 39.91359571849836))]


def metres(a: list[float] | tuple[float, float], b: list[float] | tuple[float, float]) -> float:
    lat = math.radians((a[1] + b[1]) / 2)
    dx = (a[0] - b[0]) * 111320 * math.cos(lat)
    dy = (a[1] - b[1]) * 110540
    return math.hypot(dx, dy)


def run_js(calls: list[tuple[str, float, float]]) -> list[list[float]]:
    script = (
        f"import * as c from {json.dumps(MODULE.as_uri())};\n"
        f"const calls = {json.dumps(calls)};\n"
        "console.log(JSON.stringify(calls.map(([f, x, y]) => c[f](x, y))));\n"
    )
    out = subprocess.run(
        [NODE or "node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_forward_against_known_points() -> None:
    calls = [("wgs84ToGcj02", *w) for w, _ in WGS_TO_GCJ] + [("gcj02ToBd09", *g) for g, _ in GCJ_TO_BD]
    got = run_js(calls)
    expected = [g for _, g in WGS_TO_GCJ] + [b for _, b in GCJ_TO_BD]
    for (name, *_), result, want in zip(calls, got, expected, strict=True):
        assert metres(result, want) < 0.01, (name, result, want)


def test_inverse_against_known_points() -> None:
    got = run_js(
        [("gcj02ToWgs84", *g) for _, g in WGS_TO_GCJ]
        + [("gcj02ToWgs84", *g) for g, _ in GCJ_TO_WGS]
        + [("bd09ToGcj02", *b) for b, _ in BD_TO_GCJ]
    )
    expected = [w for w, _ in WGS_TO_GCJ] + [w for _, w in GCJ_TO_WGS] + [g for _, g in BD_TO_GCJ]
    for result, want in zip(got, expected, strict=True):
        # the published GCJ->WGS / BD->GCJ values come from approximate one-step inverses;
        # the iterated inverse agrees within a metre and reproduces its input exactly
        assert metres(result, want) < 1.0, (result, want)


def test_round_trips_under_a_metre_across_china() -> None:
    points = [(lon, lat) for lon in (75.5, 87.6, 100.1, 108.9, 112.35, 116.4, 121.5, 126.6, 134.0)
              for lat in (18.3, 23.1, 28.6, 31.2, 36.1, 39.9, 45.8, 52.9)]  # fmt: skip
    calls = [("wgs84ToGcj02", x, y) for x, y in points] + [("wgs84ToBd09", x, y) for x, y in points]
    fwd = run_js(calls)
    n = len(points)
    back = run_js([("gcj02ToWgs84", *p) for p in fwd[:n]] + [("bd09ToWgs84", *p) for p in fwd[n:]])
    worst = max(metres(b, p) for b, p in zip(back, points + points, strict=True))
    assert worst < 1.0
    offsets = [metres(f, p) for f, p in zip(fwd[:n], points, strict=True)]
    assert min(offsets) > 50  # the obfuscation is really applied (typically 100-700 m)


def test_identity_outside_china() -> None:
    outside = [(2.35, 48.85), (-74.0, 40.7), (139.7, 35.7), (151.2, -33.9)]
    got = run_js(
        [(f, x, y) for f in ("wgs84ToGcj02", "gcj02ToWgs84", "wgs84ToBd09", "bd09ToWgs84") for x, y in outside]
    )
    assert got == [list(p) for _ in range(4) for p in outside]
