"""tools/sim/mqtt.py through the real broker (tools/services.sh starts it; skipped when it is not there)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tools.sim import city as city_mod
from tools.sim.clock import parse_time
from tools.sim.mqtt import Publisher, run
from tools.sim.simulation import SimConfig, Simulation

REPO = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("GPSD_MQTT_PORT", "18830"))


def broker_up() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", PORT)) == 0


@pytest.mark.skipif(
    not broker_up(), reason=f"no MQTT broker on 127.0.0.1:{PORT} (start it: bash tools/services.sh start)"
)
def test_every_publication_arrives_at_a_subscriber() -> None:
    prefix = f"simtest-{uuid.uuid4().hex[:8]}"
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-sub", clean_session=True)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    sub.connect("127.0.0.1", PORT)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        counts = {"muck_truck": 5, "mixer_truck": 3, "patrol": 2, "other": 1}
        start = parse_time("2025-06-02T10:00:00+08:00")
        cfg = SimConfig(start=start, duration_s=90, seed=1, topic_prefix=prefix, counts=counts, inject=("duplicate",))
        sim = Simulation(city_mod.load(REPO / "geofences"), cfg)
        sent: list[tuple[str, bytes]] = []
        publisher = Publisher("127.0.0.1", PORT, f"{prefix}-pub")
        try:
            run(sim, publisher, speed=None, on_second=lambda s, pubs: sent.extend((p.topic, p.payload) for p in pubs))
        finally:
            publisher.close()
        deadline = time.monotonic() + 10
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sent) == 11 * 9 + 1  # 11 vehicles, 9 fixes each, one duplicate
        assert sorted(received) == sorted(sent)
    finally:
        sub.loop_stop()
        sub.disconnect()
