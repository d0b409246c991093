"""Thin driver: publish a simulation's output on an MQTT broker (paho-mqtt 2.x, QoS 1).

Pacing: ``speed`` simulated seconds per wall second (1 = real time), or
``None`` for as fast as the broker acknowledges; either way the simulated
clock never runs ahead of the wall clock (a fix stamped in the future would
be rejected as ``ts_future``), so an accelerated run that reaches "now" goes
on in real time. Unacknowledged QoS 1
messages are bounded (``window``) so a slow broker slows the simulator
down instead of growing its memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from .simulation import Publication, Simulation


class Publisher:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        window: int = 2000,
        qos: int = 1,
        stop: threading.Event | None = None,
    ) -> None:
        """``stop``: set it (SIGTERM does) to give up waiting for acknowledgements:
        a broker that went away (``make stop`` under a running demo) would
        otherwise hold ``publish`` and ``close`` for ever."""
        self.qos, self.window = qos, window
        self._stop = stop or threading.Event()
        self.sent = self.acked = 0
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.max_inflight_messages_set(min(window, 65535))
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def publish(self, pub: Publication) -> bool:
        """False (nothing sent) once ``stop`` is set while the window is full."""
        with self._cond:
            while self.sent - self.acked >= self.window:
                if self._stop.is_set():
                    return False
                self._cond.wait(0.2)
        info = self.client.publish(pub.topic, pub.payload, qos=self.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        with self._cond:
            self.sent += 1
        return True

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for the outstanding acknowledgements (not past ``stop``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < self.sent and time.monotonic() < deadline and not self._stop.is_set():
                self._cond.wait(0.2)
            return self.acked >= self.sent

    def close(self) -> None:
        self.drain()
        # Disconnect first (paho's documented order): it wakes the network
        # loop, which otherwise waits in select for up to the keepalive when
        # the broker never answered.
        self.client.disconnect()
        self.client.loop_stop()


def run(
    sim: Simulation,
    publisher: Publisher,
    *,
    speed: float | None,
    on_second: Callable[[Simulation, list[Publication]], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Advance the simulation and publish, paced against the wall clock."""
    wall0, sim0 = time.monotonic(), sim.t
    while not sim.done() and not (stop and stop.is_set()):
        pubs = sim.advance()
        delay = sim.t - time.time()  # never ahead of the wall clock
        if speed is not None:
            delay = max(delay, wall0 + (sim.t - sim0) / speed - time.monotonic())
        if delay > 0:
            time.sleep(delay)
        for pub in pubs:
            if not publisher.publish(pub):
                return  # stopped while the broker held its acknowledgements
        if on_second:
            on_second(sim, pubs)
