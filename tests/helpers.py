"""Publishing through the real broker and waiting on the real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt

from tests.fixtures.services import MQTT_PORT


async def publish(messages: Sequence[tuple[str, bytes]], *, qos: int = 1, window: int = 500) -> int:
    """Publish with up to ``window`` QoS 1 messages in flight; returns when all are acknowledged."""
    async with aiomqtt.Client("127.0.0.1", MQTT_PORT, max_inflight_messages=window) as client:
        for i in range(0, len(messages), window):
            chunk = messages[i : i + window]
            await asyncio.gather(*(client.publish(t, p, qos=qos) for t, p in chunk))
    return len(messages)


async def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ws_messages(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``/ws/live`` messages a frame carries: a batch's messages, a positions
    frame's positions (each a ``position`` message), or the message itself."""
    if msg.get("type") == "batch":
        return [m for inner in msg["messages"] for m in ws_messages(inner)]
    if msg.get("type") == "positions":
        return list(msg["positions"])
    return [msg]
