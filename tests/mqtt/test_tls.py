"""TLS: the client verifies the broker against ``ca_file``.

The shared Mosquitto listens on plain TCP only (tools/services.sh), and no
other fixed port may be used, so a TLS-terminating relay on an OS-chosen
loopback port forwards to it: the MQTT conversation is still the real broker's.
The certificate is made with ``openssl`` for this test run."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpsd_server.mqtt import ConnectionLost, MqttClient
from tests.mqtt.conftest import HOST, Broker, receive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextlib.asynccontextmanager
async def tls_relay(cert: Path, key: Path, target_port: int) -> AsyncIterator[int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        br, bw = await asyncio.open_connection(HOST, target_port)
        await asyncio.gather(pipe(cr, bw), pipe(br, cw))
        for w in (cw, bw):
            with contextlib.suppress(Exception):
                await w.wait_closed()

    server = await asyncio.start_server(handle, HOST, 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def test_tls_session_through_the_real_broker(broker: Broker, topic: str, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "broker")
    async with tls_relay(cert, key, broker.port) as port:
        c = broker.client(tls=True, ca_file=str(cert))
        c.port = port
        assert await c.connect() is False
        await c.subscribe([topic])
        await broker.publish(topic, [b"over tls %d" % i for i in range(20)])
        got = await receive(c, 20)
        assert [m.payload for m in got] == [b"over tls %d" % i for i in range(20)]
        assert c.stats.acks_sent == 20
        await c.close()


async def test_tls_refuses_an_unknown_certificate(broker: Broker, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "broker")
    other, _ = make_cert(tmp_path, "other")
    async with tls_relay(cert, key, broker.port) as port:
        c = MqttClient(host=HOST, port=port, client_id="tls-bad-ca", tls=True, ca_file=str(other))
        with pytest.raises(ConnectionLost, match="CERTIFICATE_VERIFY_FAILED"):
            await c.connect()
