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


def test_a_stop_is_honoured_while_the_broker_withholds_acknowledgements() -> None:
    """A broker that went away (``make stop`` under a running demo) used to hold
    the simulator for ever: ``publish`` waited for room in the window, deaf to
    SIGTERM. A listener that accepts the connection and never answers stands
    in for it."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    acceptor = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    acceptor.start()
    counts = {"muck_truck": 3, "mixer_truck": 0, "patrol": 0, "other": 0}
    cfg = SimConfig(start=parse_time("2025-06-02T10:00:00+08:00"), duration_s=600, seed=1, counts=counts)
    sim = Simulation(city_mod.load(REPO / "geofences"), cfg)
    stop = threading.Event()
    publisher = Publisher("127.0.0.1", port, "simtest-silent", window=2, stop=stop)
    done = threading.Event()
    runner = threading.Thread(target=lambda: (run(sim, publisher, speed=None, stop=stop), done.set()), daemon=True)
    try:
        runner.start()
        time.sleep(1.0)
        assert not done.is_set() and publisher.sent == 2  # the window is full, nothing acknowledged
        stop.set()
        assert done.wait(2.0), "run() did not return after stop"
        t0 = time.monotonic()
        assert not publisher.drain()  # gives up at once: stopped
        assert time.monotonic() - t0 < 1.0
        t0 = time.monotonic()
        publisher.close()  # and closes at once too (it waited up to the keepalive)
        assert time.monotonic() - t0 < 2.0
    finally:
        publisher.close()
        acceptor.join(5)
        listener.close()
        for conn in accepted:
            conn.close()
