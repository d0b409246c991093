"""Fixtures for gpsd_server.mqtt: the REAL Mosquitto of tools/services.sh on
127.0.0.1:GPSD_MQTT_PORT, helpers to stop, freeze and restart it, and a tiny
fake broker for the protocol violations the real one cannot be made to do.

Every test uses its own client ids and topics (uuid) and removes the
persistent sessions it made, so runs never see each other's queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpsd_server.mqtt import Message, MqttClient, MqttError
from gpsd_server.mqtt.codec import decode_varint
from tests.fixtures.services import MQTT_PORT, REPO

HOST = "127.0.0.1"


def broker_pid(port: int = MQTT_PORT) -> int:
    """The pid of the mosquitto whose config file has ``listener PORT``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not argv[0].endswith(b"mosquitto") or b"-c" not in argv:
                continue
            conf = Path(argv[argv.index(b"-c") + 1].decode()).read_text()
        except (OSError, IndexError):
            continue
        if any(line.split()[:2] == ["listener", str(port)] for line in conf.splitlines() if line.strip()):
            return int(proc.name)
    raise AssertionError(f"no mosquitto listening on port {port}")


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


@dataclass
class Broker:
    """The real broker and ways to hurt it."""

    port: int
    made: list[tuple[str, int]] = field(default_factory=list)  # (client id, protocol) to forget

    def client(self, *, protocol: int = 5, client_id: str = "", **kw: object) -> MqttClient:
        cid = client_id or f"t-{uuid.uuid4().hex[:12]}"
        self.made.append((cid, protocol))
        return MqttClient(host=HOST, port=self.port, client_id=cid, protocol=protocol, **kw)  # type: ignore[arg-type]

    @property
    def pid(self) -> int:
        return broker_pid(self.port)

    def restart(self) -> None:
        """Stop Mosquitto (SIGTERM: it saves its persistence file) and start it
        again with tools/services.sh, which leaves the running PostgreSQL be."""
        try:
            pid = self.pid
        except AssertionError:
            pid = 0  # not running (a test died between stop and start): just start it
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        subprocess.run(["bash", str(REPO / "tools" / "services.sh"), "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 15
        while not _port_open(self.port):
            assert time.monotonic() < deadline, "broker did not come back"
            time.sleep(0.05)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the broker for the block (SIGCONT always follows)."""
        pid = self.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    async def publish(self, topic: str, payloads: list[bytes], qos: int = 1) -> None:
        """Publish through a throwaway clean-session client."""
        pub = MqttClient(
            host=HOST, port=self.port, client_id=f"pub-{uuid.uuid4().hex[:12]}", clean_start=True, session_expiry_s=0
        )
        await pub.connect()
        try:
            for start in range(0, len(payloads), 500):
                await asyncio.gather(*(pub.publish(topic, p, qos=qos) for p in payloads[start : start + 500]))
        finally:
            await pub.close()

    async def forget_all(self) -> None:
        for cid, protocol in self.made:
            c = MqttClient(
                host=HOST, port=self.port, client_id=cid, protocol=protocol, clean_start=True, session_expiry_s=0
            )
            with contextlib.suppress(MqttError, OSError):
                await c.connect()
                await c.close()


@pytest.fixture
async def broker(services: None) -> AsyncIterator[Broker]:
    b = Broker(MQTT_PORT)
    yield b
    if not _port_open(b.port):  # a test died between stop and start
        b.restart()
    await b.forget_all()


@pytest.fixture
def topic() -> str:
    return f"test/mqtt/{uuid.uuid4().hex}"


async def receive(
    client: MqttClient, n: int, *, ack: bool = True, timeout: float = 10.0, max_messages: int = 5000
) -> list[Message]:
    """Collect n messages from ``batches`` (acknowledging each batch unless told not to)."""
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        async for batch in client.batches(max_messages=max_messages):
            assert batch
            got.extend(batch)
            if ack:
                client.ack(batch)
            if len(got) >= n:
                break
    return got


# -- a fake broker, for protocol violations only ------------------------------------


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet from a stream."""
    head = await reader.readexactly(2)
    while head[-1] & 0x80:
        head += await reader.readexactly(1)
    length, _ = decode_varint(head, 1)
    return head + await reader.readexactly(length)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


CONNACK_OK = b"\x20\x03\x00\x00\x00"  # MQTT 5, success, no properties


@contextlib.asynccontextmanager
async def fake_broker(script: Script, connack: bytes | None = CONNACK_OK) -> AsyncIterator[int]:
    """Serve ``script`` on an OS-chosen loopback port; yields the port.

    The script gets the connection after the CONNECT was read and ``connack``
    (default: MQTT 5 success) was sent; ``None`` sends none."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await read_packet(reader)  # CONNECT
            if connack is not None:
                writer.write(connack)
                await writer.drain()
            await asyncio.sleep(0.05)  # CONNACK first, alone: connect() returns before the script acts
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # cancelled at teardown: swallowed, or asyncio logs the handler's "exception"
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
