"""The simulator speaks all three input paths, and each decodes to fixes of
the right vehicle (issue 7: the same engine behind every path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpsd_server.core.city import parse_vehicles
from gpsd_server.core.decode.jt808 import decode_jt808, terminal_registry
from gpsd_server.core.decode.native import decode_native
from gpsd_server.core.decode.owntracks import decode_owntracks
from gpsd_server.model import Fix
from gpsd_server.settings import IngestSettings

REPO = Path(__file__).resolve().parents[2]


def test_native_owntracks_and_jt808_all_decode(tmp_path: Path) -> None:
    out = tmp_path / "pub.jsonl"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "simulate.py"), "--dry-run", str(out), "--speed", "max",
         "--duration", "60", "--owntracks-share", "1", "--jt808-share", "1", "--quiet", "--seed", "3",
         "--start", "2026-11-27T10:00:00+08:00"],
        check=True, cwd=REPO,
    )  # fmt: skip
    vehicles = parse_vehicles("vehicles.json", (REPO / "geofences" / "vehicles.json").read_bytes())
    terminals = terminal_registry((v.terminal, v.id) for v in vehicles.values() if v.terminal)
    devices = {v.owntracks: v.id for v in vehicles.values() if v.owntracks}
    limits = IngestSettings(max_age_days=10 * 365)
    seen: dict[str, set[str]] = {"fleet": set(), "jt808": set(), "owntracks": set()}
    for line in out.read_text().splitlines():
        pub = json.loads(line)
        topic, payload, now = pub["topic"], pub["payload"].encode(), pub["ts"] + 1
        parts = topic.split("/")
        if parts[0] == "fleet":
            fixes = decode_native(parts[1], payload, now=now, limits=limits)
        elif parts[0] == "jt808":
            fixes = decode_jt808(parts[2], payload, now=now, limits=limits, terminals=terminals)
        else:
            fixes = decode_owntracks("/".join(parts[1:3]), payload, now=now, limits=limits, devices=devices)
        assert fixes and all(isinstance(f, Fix) for f in fixes), (topic, fixes)
        for f in fixes:
            assert isinstance(f, Fix) and vehicles[f.vehicle_id]
            seen[parts[0]].add(f.vehicle_id)
    assert all(seen.values()), {k: len(v) for k, v in seen.items()}
    assert not (seen["jt808"] & seen["owntracks"]) and not (seen["fleet"] & seen["jt808"])
    assert {vehicles[v].vehicle_class for v in seen["owntracks"]} == {"patrol"}
