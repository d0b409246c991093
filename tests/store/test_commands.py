"""The command queue's statements against the real database: claim once,
answers matched by number (or oldest first), resends and timeouts, expiry,
a closed connection's commands sent again, and health rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from gpsd_server.store import commands as store
from gpsd_server.store.schema import migrate


@pytest.fixture
async def conn(database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as c:
        await migrate(c)
        yield c


async def queue(conn: psycopg.AsyncConnection[Any], phone: str, msg_id: int = 0x8300) -> store.CommandRow:
    return await store.enqueue(
        conn, vehicle_id=f"V-{phone}", phone=phone, kind="text", msg_id=msg_id, body={"flag": 12, "text": "x"},
        created_by="test",
    )  # fmt: skip


def phone() -> str:
    return "1" + uuid.uuid4().hex[:10].translate(str.maketrans("abcdef", "123456"))


async def test_a_command_is_claimed_once_and_answered_by_number(conn: psycopg.AsyncConnection[Any]) -> None:
    p = phone()
    row = await queue(conn, p)
    assert [r.id for r in await store.queued(conn, [p], 10)] == [row.id]
    assert await store.queued(conn, ["somebody-else"], 10) == []
    assert await store.claim(conn, row.id, transport="tcp", connection=None, msg_sn=None, ack_observable=True)
    assert not await store.claim(conn, row.id, transport="tcp", connection=None, msg_sn=None, ack_observable=True)
    await store.sent_on(conn, row.id, msg_sn=7, connection="tcp:1")
    # Over TCP only the exact number on the exact connection answers it.
    assert await store.answered(conn, phone=p, msg_ids=[0x8300], msg_sn=8, result=0, connection="tcp:1") is None
    assert await store.answered(conn, phone=p, msg_ids=[0x8300], msg_sn=7, result=0, connection="tcp:2") is None
    assert await store.answered(conn, phone=p, msg_ids=[0x8300], msg_sn=7, result=0, connection="tcp:1") == row.id
    done = await store.get(conn, row.id)
    assert done is not None and (done.status, done.result, done.attempts) == ("acknowledged", 0, 1)


async def test_a_refusing_terminal_fails_the_command(conn: psycopg.AsyncConnection[Any]) -> None:
    p = phone()
    row = await queue(conn, p)
    await store.claim(conn, row.id, transport="tcp", connection="tcp:9", msg_sn=3, ack_observable=True)
    assert await store.answered(conn, phone=p, msg_ids=[0x8300], msg_sn=3, result=3, connection="tcp:9") == row.id
    failed = await store.get(conn, row.id)
    assert failed is not None and (failed.status, failed.result, failed.error) == ("failed", 3, "terminal answered 3")


async def test_without_a_matching_number_the_oldest_sent_through_emqx_is_taken(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    p = phone()
    first, second = await queue(conn, p, 0x8201), await queue(conn, p, 0x8201)
    for row, sn in ((first, 100), (second, 101)):
        await store.claim(conn, row.id, transport="mqtt", connection=None, msg_sn=sn, ack_observable=True)
    assert await store.answered(conn, phone=p, msg_ids=[0x8201], msg_sn=101, result=0, transport="mqtt") == second.id
    assert await store.answered(conn, phone=p, msg_ids=[0x8201], msg_sn=555, result=0, transport="mqtt") == first.id
    assert await store.answered(conn, phone=p, msg_ids=[0x8201], msg_sn=None, result=0, transport="mqtt") is None


async def test_unanswered_commands_go_out_again_then_time_out(conn: psycopg.AsyncConnection[Any]) -> None:
    p = phone()
    row = await queue(conn, p)
    unobserved = await queue(conn, p)
    await store.claim(conn, unobserved.id, transport="mqtt", connection=None, msg_sn=1, ack_observable=False)
    for attempt in (1, 2):
        assert await store.claim(conn, row.id, transport="tcp", connection="tcp:1", msg_sn=attempt, ack_observable=True)
        await conn.execute("UPDATE terminal_commands SET sent_at = now() - interval '2 minutes' WHERE phone = %s", (p,))
        await store.expire(conn, ack_timeout_s=60, queue_s=3600, max_attempts=2)
        again = await store.get(conn, row.id)
        assert again is not None
        assert again.status == ("queued" if attempt == 1 else "timed_out")
    still = await store.get(conn, unobserved.id)
    assert still is not None and still.status == "sent"  # through EMQX: no answer to wait for


async def test_a_command_that_waits_too_long_fails(conn: psycopg.AsyncConnection[Any]) -> None:
    p = phone()
    row = await queue(conn, p)
    await conn.execute("UPDATE terminal_commands SET created_at = now() - interval '2 hours' WHERE id = %s", (row.id,))
    assert await store.expire(conn, ack_timeout_s=60, queue_s=3600, max_attempts=3) >= 1
    expired = await store.get(conn, row.id)
    assert expired is not None and expired.status == "failed" and (expired.error or "").startswith("expired")


async def test_a_closed_connections_commands_are_sent_again(conn: psycopg.AsyncConnection[Any]) -> None:
    p = phone()
    row = await queue(conn, p)
    await store.claim(conn, row.id, transport="tcp", connection="tcp:5", msg_sn=1, ack_observable=True)
    assert await store.requeue_connection(conn, phone=p, connection="tcp:6", max_attempts=3) == 0
    assert await store.requeue_connection(conn, phone=p, connection="tcp:5", max_attempts=3) == 1
    back = await store.get(conn, row.id)
    assert back is not None and back.status == "queued"
    await store.claim(conn, row.id, transport="tcp", connection="tcp:7", msg_sn=2, ack_observable=True)
    await store.release(conn, row.id, "terminal went away")
    released = await store.get(conn, row.id)
    assert released is not None and (released.status, released.attempts) == ("queued", 1)


async def test_health_rows_round_trip(conn: psycopg.AsyncConnection[Any]) -> None:
    p, now = phone(), time.time()
    row = {
        "phone": p, "header_phone": "0" + p, "vehicle_id": None, "transport": "tcp", "mqtt_clientid": "",
        "peer": "127.0.0.1:1", "connected": True, "state": "auth_failed", "close_reason": "", "edition": 2019,
        "proto_ver": 1, "plate": "湘A1", "model": "M", "imei": "", "software_version": "", "first_seen": now,
        "last_connect": now, "last_disconnect": None, "last_frame": now, "last_drop": "auth_failed",
        "last_drop_at": now, "connections": 2, "drops": {"auth_failed": 3}, "tolerated": {"version_bit": 1},
    }  # fmt: skip
    await store.save_health(conn, [row])
    await store.save_health(conn, [row | {"connections": 3}])
    [back] = [r for r in await store.health_for_restore(conn) if r["phone"] == p]
    assert back["connections"] == 3 and back["drops"] == {"auth_failed": 3}
    assert abs(back["last_frame"] - now) < 1e-3 and back["state"] == "auth_failed"
