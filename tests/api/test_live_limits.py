"""/ws/live limits: a stalled client gets conflated positions and is dropped
only when its alert backlog overflows, without hurting the others; oversized
messages and subscriptions are refused, the client cap holds."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiomqtt
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from gpsd_server import wire
from gpsd_server.api.live import WS_MAX_MESSAGE
from tests.api.test_live import flatten
from tests.fixtures.server import RunningServer
from tests.fixtures.services import MQTT_PORT
from tests.helpers import wait_for

SEND_QUEUE = 50
MAX_CLIENTS = 4
FAR_LON, FAR_LAT = 110.0, 27.0  # outside every zone: positions only, no alerts


@pytest.fixture
def server_overrides() -> dict[str, str]:
    return {
        "GPSD_HTTP__WS_SEND_QUEUE": str(SEND_QUEUE),
        "GPSD_HTTP__WS_MAX_CLIENTS": str(MAX_CLIENTS),
        "GPSD_HTTP__WS_FLUSH_MS": "20",
    }


async def subscribed(server: RunningServer, vehicles: list[str], **kwargs: object) -> websockets.ClientConnection:
    ws = await websockets.connect(server.ws_url(), **kwargs)  # type: ignore[arg-type]
    assert json.loads(await ws.recv())["type"] == "snapshot"
    await ws.send(json.dumps({"type": "subscribe", "vehicles": vehicles}))
    assert json.loads(await ws.recv())["type"] == "snapshot"
    return ws


class StalledClient:
    """A websocket client that completes the handshake and then reads nothing
    until told to (sans-I/O protocol over a socket with a tiny receive buffer)."""

    def __init__(self, url: str, port: int) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)

    async def _send_pending(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def handshake(self) -> None:
        self.protocol.send_request(self.protocol.connect())
        await self._send_pending()
        while self.protocol.state is not State.OPEN:
            self.protocol.receive_data(await asyncio.get_running_loop().sock_recv(self.sock, 1))
            assert self.protocol.handshake_exc is None
        self.protocol.events_received()

    async def read_until_closed(self, timeout: float) -> tuple[int, str]:
        """Read everything the server queued; the close code and reason at the end."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while self.protocol.close_rcvd is None:
                chunk = await loop.sock_recv(self.sock, 1 << 16)
                if not chunk:
                    self.protocol.receive_eof()
                    break
                self.protocol.receive_data(chunk)
                self.protocol.events_received()
                await self._send_pending()  # pongs
        close = self.protocol.close_rcvd
        assert close is not None, "connection ended without a close frame"
        return close.code, close.reason

    def close(self) -> None:
        self.sock.close()


async def test_a_stalled_client_is_conflated_then_dropped_for_alerts_and_the_fast_one_gets_everything(
    server: RunningServer,
) -> None:
    vehicles = [f"{server.prefix}-s{i}" for i in range(20)]
    slow = StalledClient(server.ws_url(), server.server.http_port)
    await slow.handshake()
    fast = await subscribed(server, vehicles)
    hub = server.server.hub
    assert hub.client_count == 2
    latest: dict[str, str] = {}
    alerts: list[str] = []

    async def read_fast() -> None:
        async for raw in fast:
            msg = json.loads(raw)
            for m in flatten(msg):
                if m["type"] == "position":
                    latest[m["vehicle_id"]] = m["ts"]
                elif m["type"] == "alert" and m["kind"] == "sos":
                    alerts.append(f"{m['id']}:{m['phase']}")

    reader = asyncio.create_task(read_fast())
    t0 = time.time() - 3000
    try:
        async with aiomqtt.Client("127.0.0.1", MQTT_PORT) as mqtt:

            async def one_round(k: int, alarm: int, fixes: int = 1) -> None:
                """Every vehicle sends ``fixes`` fixes (one message), the last at t0 + k."""
                body = [{"ts": t0 + k - (fixes - 1 - i) * 0.01, "lon": FAR_LON, "lat": FAR_LAT, "alarm": alarm}
                        for i in range(fixes)]  # fmt: skip
                payload = json.dumps(body).encode()
                await asyncio.gather(*(mqtt.publish(f"{server.prefix}/{v}/fix", payload, qos=1) for v in vehicles))
                ts = wire.ts_text(wire.utc(t0 + k))
                await wait_for(
                    lambda: all(latest.get(v) == ts for v in vehicles), timeout=10, what="the fast client's positions"
                )

            # Positions only, far more frames and bytes than the stalled client's
            # queue and socket buffers hold: it is kept, its positions conflated.
            k = 0
            while k < SEND_QUEUE or not hub.positions_conflated:
                await one_round(k, 0, fixes=50)
                k += 1
                assert k < 20 * SEND_QUEUE, "the stalled client's positions were never conflated"
            assert hub.clients_dropped == 0 and hub.client_count == 2
            # Alerts are never conflated: the stalled client is dropped once they overflow its queue.
            first = k
            while not hub.clients_dropped and k < first + 200:
                await one_round(k, (k - first + 1) % 2)
                k += 1
            assert hub.clients_dropped == 1, "the stalled client was never dropped"
            for _ in range(3):  # the fast one goes on receiving
                await one_round(k, (k - first + 1) % 2)
                k += 1
            raised = (k - first) * len(vehicles)  # every round toggles SOS: a start, then its end
            await wait_for(lambda: len(alerts) >= raised, timeout=10, what="every alert on the fast client")
        assert len(alerts) == len(set(alerts)) == raised
        assert hub.client_count == 1
        # Once the stalled client reads, it finds the close with the reason.
        code, reason = await slow.read_until_closed(timeout=30)
        assert code == 1008 and "too slow" in reason
    finally:
        reader.cancel()
        await fast.close()
        slow.close()


async def test_oversized_messages_and_subscriptions_are_refused(server: RunningServer) -> None:
    async with websockets.connect(server.ws_url(), max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "classes": ["x" * WS_MAX_MESSAGE]}))
        reply = json.loads(await ws.recv())
        assert reply == {"type": "error", "error": "message too large"}

        # 10,001 short ids fit in the message limit but not the subscription limit
        ids = [f"{i:x}" for i in range(10_001)]
        await ws.send(json.dumps({"type": "subscribe", "vehicles": ids}, separators=(",", ":")))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error" and "vehicles: at most 10000" in reply["error"]

        for bad in ["{nope", "[1]", json.dumps({"type": "subscribe", "bbox": [1, 2]})]:
            await ws.send(bad)
            assert json.loads(await ws.recv())["type"] == "error", bad
        await ws.send(b"\x00binary")
        assert "binary" in json.loads(await ws.recv())["error"]
        await ws.send("[" * 100_000 + "]" * 100_000)
        assert "nested" in json.loads(await ws.recv())["error"]

        # still subscribed and serving
        await ws.send(json.dumps({"type": "subscribe", "vehicles": ["a"]}))
        assert json.loads(await ws.recv())["type"] == "snapshot"

    # A frame beyond the server's maximum size closes that connection (1009) only.
    async with websockets.connect(server.ws_url(), max_size=None) as ws:
        await ws.recv()
        await ws.send("x" * (1024 * 1024 + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with websockets.connect(server.ws_url()) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"


async def test_client_cap(server: RunningServer) -> None:
    clients = [await websockets.connect(server.ws_url()) for _ in range(MAX_CLIENTS)]
    try:
        for c in clients:
            assert json.loads(await c.recv())["type"] == "snapshot"
        async with websockets.connect(server.ws_url()) as extra:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(extra.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert server.server.hub.client_count == MAX_CLIENTS
    finally:
        for c in clients:
            await c.close()
    await wait_for(lambda: server.server.hub.client_count == 0, timeout=10, what="clients to be removed")
    async with websockets.connect(server.ws_url()) as ws:  # room again
        assert json.loads(await ws.recv())["type"] == "snapshot"


async def test_replay_refuses_binary_and_deep_messages(server: RunningServer) -> None:
    async with websockets.connect(server.ws_url("/ws/replay")) as ws:
        for bad in [b"\x00binary", "[" * 5000 + "]" * 5000, "x" * (64 * 1024)]:
            await ws.send(bad)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["type"] == "error" and reply["parameter"] == "message", reply
        await ws.send(json.dumps({"type": "seek"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["parameter"] == "type"
