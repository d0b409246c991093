"""`make demo` (tools/demo.sh) on a state folder and ports of its own: it
serves, and `make stop` (tools/services.sh stop) ends the demo first -- server
and fleet -- then the services. Found by hand: stopping the services under a
running demo left a server answering 503 and a simulator reconnecting for ever."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.fixtures.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def _ours(state: Path) -> list[str]:
    """Command lines of live processes that mention the state folder (the
    server's log, the simulator's truth file, the services)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(state) in cmd or f"GPSD_STATE={state}".encode() in environ:
            out.append(cmd)
    return out


def test_the_demo_serves_and_make_stop_ends_it_before_the_services(tmp_path: Path) -> None:
    state = tmp_path / "state"
    http = free_port()
    env = {
        **os.environ,
        "GPSD_STATE": str(state),
        "GPSD_PG_PORT": str(free_port()),
        "GPSD_MQTT_PORT": str(free_port()),
        "GPSD_HTTP_PORT": str(http),
    }
    demo = subprocess.Popen(
        ["bash", "tools/demo.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "starting the simulated fleet" in line:
                break
        assert any("starting the simulated fleet" in x for x in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=10) as r:
            assert r.status == 200
        assert (state / "demo.pid").read_text().strip() == str(demo.pid)
        again = subprocess.run(["bash", "tools/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "a demo already runs" in again.stderr  # one demo per state folder

        stop = subprocess.run(
            ["bash", "tools/services.sh", "stop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0, stop.stderr
        assert "demo stopped (server and fleet)" in stop.stdout + stop.stderr
        demo.wait(10)  # ended by the stop (raises if it is still running)
        rest = demo.stdout.read()
        assert "[demo] stopped the server and the fleet" in rest
        time.sleep(0.5)
        assert _ours(state) == []  # server, simulator, broker and database all gone
        assert not (state / "demo.pid").exists()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        if demo.stdout is not None:
            demo.stdout.close()
        subprocess.run(["bash", "tools/services.sh", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=60)
