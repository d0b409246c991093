"""tools/sim/mqtt.py through the real broker (the services fixture starts it)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.fixtures.services import MQTT_PORT as PORT
from tools.sim import city as city_mod
from tools.sim.clock import parse_time
from tools.sim.mqtt import Publisher, run
from tools.sim.simulation import SimConfig, Simulation

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("services")
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
