"""``/ws/live``: a snapshot of the last positions on connect, then frames of
positions (one per flush interval, see :mod:`gpsd_server.sinks.hub`) and
alerts as they happen; a client may narrow what it gets with
``{"type": "subscribe", "bbox": [...], "classes": [...], "vehicles": [...]}``,
and choose with ``?positions=rows`` the lean form of the frames of positions
and with ``?zones=false`` to go without zone records (the page does both).

One sender task per socket sends what the hub queued for it, in order; while
it waits on a slow socket, the hub conflates the client's positions."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gpsd_server import wire
from gpsd_server.api.auth import websocket_principal
from gpsd_server.api.deps import ApiServices
from gpsd_server.sinks.hub import Subscription, SubscriptionError, parse_subscription

WS_MAX_MESSAGE = 256 * 1024  # room for a subscription to 10,000 vehicles
# Query parameters: ``positions=objects|rows`` (the form of the frames of
# positions) and ``zones=true|false`` (zone presence records or not).
_FORMS = ("objects", "rows")
_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def _error(text: str) -> bytes:
    return wire.encode(wire.Error(error=text[:200]))


def router(services: ApiServices) -> APIRouter:
    r = APIRouter()
    snapshot_max = services.config.http.ws_snapshot_max
    heartbeat_s = services.config.http.ws_heartbeat_s

    @r.websocket("/ws/live")
    async def ws_live(ws: WebSocket) -> None:
        hub = services.live
        who = await websocket_principal(ws, "viewer", company="own")
        if who is None:
            return
        form = ws.query_params.get("positions", "objects")
        zones = ws.query_params.get("zones", "true")
        await ws.accept()
        if form not in _FORMS or zones not in _FLAGS:
            bad = "positions must be objects or rows" if form not in _FORMS else "zones must be true or false"
            await ws.close(code=1008, reason=bad)
            return
        client = hub.add_client()
        if client is None:
            await ws.close(code=1013, reason="too many clients")
            return
        client.rows, client.zones = form == "rows", _FLAGS[zones]
        # A company account: its own vehicles' positions and alerts, no 12319 cases.
        client.subscription = Subscription(scope=who.scope)
        client.cases = who.scope is None
        try:
            await ws.send_text(hub.snapshot(client, snapshot_max).decode())

            async def sender() -> None:
                while True:
                    try:
                        # Cancelling the wait is safe: the hub's queue keeps what it holds.
                        async with asyncio.timeout(heartbeat_s):
                            data = await client.outgoing()
                    except TimeoutError:  # quiet: say the server is alive (the page's stall banner)
                        await ws.send_text(wire.encode(wire.Heartbeat(ts=wire.utc(time.time()))).decode())
                        continue
                    if data is None:  # the hub dropped this client
                        await ws.close(code=1008, reason=client.dropped or "dropped")
                        return
                    positions = data is client.pending_frame
                    await ws.send_text(data)
                    if positions:  # what the hub conflated meanwhile follows, after any alert
                        client.frame_sent()

            send_task = asyncio.create_task(sender(), name="ws-sender")
            try:
                while not send_task.done():
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    text = message.get("text")
                    # Replies go through the client's queue: one sender per socket.
                    if text is None:
                        hub.reply(client, _error("binary messages are not supported"))
                        continue
                    if len(text) > WS_MAX_MESSAGE:
                        hub.reply(client, _error("message too large"))
                        continue
                    try:
                        msg = wire.decode(text)
                        if isinstance(msg, dict) and msg.get("type") == "subscribe":
                            client.subscription = parse_subscription(msg, scope=who.scope)
                            hub.reply(client, hub.snapshot(client, snapshot_max))
                        else:
                            raise SubscriptionError("type must be subscribe")
                    except (msgspec.DecodeError, SubscriptionError) as exc:
                        hub.reply(client, _error(str(exc)))
                    except RecursionError:
                        hub.reply(client, _error("JSON nested too deeply"))
            finally:
                send_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await send_task
        except WebSocketDisconnect:
            pass
        finally:
            hub.remove_client(client)

    return r
