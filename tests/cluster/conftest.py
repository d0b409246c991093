"""The scale-out tests run against a real RabbitMQ node started by the
project's own script (tools/cluster/services.sh, Debian's rabbitmq-server with
its MQTT plugin), stopped again if this session started it. Each test gets
its own exchanges, queues, topics and database on it."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.fixtures.services import REPO

AMQP_PORT = int(os.environ.get("GPSD_AMQP_PORT", os.environ.get("GPSD_CLUSTER_PORT", "15610")))
AMQP_MQTT_PORT = int(os.environ.get("GPSD_AMQP_MQTT_PORT", os.environ.get("GPSD_CLUSTER_MQTT_PORT", "18942")))
SCRIPT = REPO / "tools" / "cluster" / "services.sh"


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[tuple[int, int]]:
    """(AMQP port, MQTT port) of the running node."""
    started = False
    if not (_open(AMQP_PORT) and _open(AMQP_MQTT_PORT)):
        subprocess.run(["bash", str(SCRIPT), "start"], check=True, timeout=300)
        started = True
    yield AMQP_PORT, AMQP_MQTT_PORT
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], check=False, timeout=120)
