"""The core imports no asyncio, network or database module, and runs without
clocks, files or sockets (DESIGN.md: pure core)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import gpsd_server.core

BLOCKED = ("asyncio", "aiomqtt", "psycopg", "psycopg_pool", "websockets", "socket", "paho")

# Third-party libraries the core uses are imported first: pyproj pulls in
# importlib.metadata -> email.utils -> socket, which is theirs, not ours.
# Then the blocked modules are purged, so an import *from the core* must
# go through the blocker and fail.
PROBE = """
import importlib, sys
import msgspec, numpy, pyproj, shapely, zoneinfo

BLOCKED = {blocked!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the pure core must not import {{name}}")
        return None

for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
sys.meta_path.insert(0, Block())
for module in {modules!r}:
    importlib.import_module(module)
print("ok", len({modules!r}))
"""


def core_modules() -> list[str]:
    root = Path(gpsd_server.core.__file__).parent
    return ["gpsd_server.core"] + [
        m.name
        for m in pkgutil.walk_packages([str(root)], prefix="gpsd_server.core.")
        if not m.name.endswith("__main__")
    ]


def test_core_modules_import_with_io_modules_blocked() -> None:
    modules = core_modules()
    assert "gpsd_server.core.engine" in modules and "gpsd_server.core.rules.route" in modules
    probe = PROBE.format(blocked=BLOCKED, modules=modules)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_core_runs_with_clocks_files_and_sockets_taken_away() -> None:
    """tests/core/purity_probe.py: decoders, the JT/T 808 session, the city loader,
    every rule, restore and history, with time, datetime.now, open, pathlib I/O
    and sockets raising."""
    probe = Path(__file__).with_name("purity_probe.py")
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok") and " events" in done.stdout
