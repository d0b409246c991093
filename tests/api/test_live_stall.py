"""/ws/live after the server's event loop stalls for 10 s (issue 14.6): the
catch-up burst is conflated for clients still busy with their last frame, so
fast clients are not dropped and get every alert raised meanwhile."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from websockets.sync.client import connect

from gpsd_server import wire
from tests.api.test_live import flatten
from tests.fixtures.server import RunningServer
from tests.fixtures.services import MQTT_PORT
from tests.helpers import wait_for

SEND_QUEUE = 300  # far fewer than the positions of the burst, more than its alerts
VEHICLES = 50
ROUNDS = 100  # fixes per vehicle published during the stall
TOGGLE = 20  # SOS set or cleared every TOGGLE rounds: 4 alerts per vehicle
FAR_LON, FAR_LAT = 110.0, 27.0  # outside every zone: no other alerts


@pytest.fixture
def server_overrides() -> dict[str, str]:
    return {"GPSD_HTTP__WS_SEND_QUEUE": str(SEND_QUEUE)}


@dataclass
class Watcher:
    """A websocket client in its own thread: it keeps reading while the server is stalled."""

    url: str
    latest: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    closed: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with connect(self.url, max_size=None, close_timeout=2) as ws:
            assert json.loads(ws.recv())["type"] == "snapshot"
            self.ready.set()
            while not self.stop.is_set():
                try:
                    msg = json.loads(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                except Exception as exc:  # a drop is what the test looks for
                    self.closed = repr(exc)
                    return
                for m in flatten(msg):
                    if m["type"] == "position":
                        self.latest[m["vehicle_id"]] = m["ts"]
                    elif m["type"] == "alert" and m["kind"] == "sos":
                        self.alerts.append(f"{m['vehicle_id']}:{m['phase']}:{m['ts']}")


def publish(prefix: str, rounds: range, t0: float) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", MQTT_PORT)
    c.loop_start()
    try:
        infos = []
        for k in rounds:
            alarm = (k // TOGGLE) % 2
            for v in range(VEHICLES):
                body = {"ts": t0 + k, "lon": FAR_LON, "lat": FAR_LAT, "alarm": alarm}
                infos.append(c.publish(f"{prefix}/{prefix}-v{v}/fix", json.dumps(body).encode(), qos=1))
        for info in infos:
            info.wait_for_publish(30)
    finally:
        c.disconnect()
        c.loop_stop()


async def test_fast_clients_catch_up_after_a_10_s_stall_with_every_alert(server: RunningServer) -> None:
    hub = server.server.hub
    watchers = [Watcher(server.ws_url()) for _ in range(3)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in watchers]
    for t in threads:
        t.start()
    t0 = time.time() - 3600
    try:
        await wait_for(lambda: all(w.ready.is_set() for w in watchers), timeout=10, what="clients connected")
        await asyncio.to_thread(publish, server.prefix, range(1), t0)  # every vehicle known, SOS clear
        first = wire.ts_text(wire.utc(t0))
        await wait_for(lambda: all(len(w.latest) == VEHICLES for w in watchers), what="the first round")
        assert all(set(w.latest.values()) == {first} for w in watchers)

        burst = threading.Thread(target=publish, args=(server.prefix, range(1, ROUNDS + 1), t0))
        burst.start()
        time.sleep(10)  # noqa: ASYNC251 - on purpose: the server's loop (this one) stalls while the burst arrives
        burst.join(30)
        assert not burst.is_alive()

        last = wire.ts_text(wire.utc(t0 + ROUNDS))
        expected = {
            f"{server.prefix}-v{v}:{'start' if (k // TOGGLE) % 2 else 'end'}:{wire.ts_text(wire.utc(t0 + k))}"
            for v in range(VEHICLES)
            for k in range(TOGGLE, ROUNDS + 1, TOGGLE)
        }
        await wait_for(
            lambda: all(set(w.latest.values()) == {last} and len(w.alerts) >= len(expected) for w in watchers),
            timeout=60,
            what="every client to catch up",
        )
        assert hub.clients_dropped == 0 and hub.client_count == 3
        for w in watchers:
            assert w.closed is None
            assert sorted(w.alerts) == sorted(expected)  # every alert, once
        # The burst held many times more positions than a client's send queue:
        # one message per position would have dropped every client.
        assert hub.positions_encoded >= VEHICLES * ROUNDS > 10 * SEND_QUEUE
    finally:
        for w in watchers:
            w.stop.set()
        for t in threads:
            t.join(10)
