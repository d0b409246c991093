"""The ``terminal_commands`` queue and the ``terminal_health`` table.

Every statement about commands to JT/T 808 terminals and their health is
here. A command is claimed (``queued`` -> ``sent``) by a conditional update
before it is written to the terminal, so two server processes never send
the same command; an answer is matched by phone, command id and sequence
number (and, over TCP, the connection it went out on).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[Any]
OPEN = ("queued", "sent")
FINAL = ("acknowledged", "failed", "timed_out")

_COLUMNS = (
    "id, vehicle_id, phone, kind, msg_id, body, status, attempts, transport, connection, msg_sn, ack_observable,"
    " result, error, dispatch_id, created_by, created_at, sent_at, acked_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: int
    vehicle_id: str
    phone: str
    kind: str
    msg_id: int
    body: dict[str, Any]
    status: str
    attempts: int
    transport: str | None
    connection: str | None
    msg_sn: int | None
    ack_observable: bool
    result: int | None
    error: str | None
    dispatch_id: int | None
    created_by: str
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    updated_at: datetime


async def enqueue(
    conn: Conn, *, vehicle_id: str, phone: str, kind: str, msg_id: int, body: dict[str, Any], created_by: str,
    dispatch_id: int | None = None,
) -> CommandRow:  # fmt: skip
    cur = conn.cursor(row_factory=class_row(CommandRow))
    await cur.execute(
        "INSERT INTO terminal_commands (vehicle_id, phone, kind, msg_id, body, created_by, dispatch_id)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (vehicle_id, phone, kind, msg_id, Jsonb(body), created_by, dispatch_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get(conn: Conn, command_id: int) -> CommandRow | None:
    cur = conn.cursor(row_factory=class_row(CommandRow))
    await cur.execute(f"SELECT {_COLUMNS} FROM terminal_commands WHERE id = %s", (command_id,))
    return await cur.fetchone()


async def for_vehicle(conn: Conn, vehicle_id: str, limit: int) -> list[CommandRow]:
    cur = conn.cursor(row_factory=class_row(CommandRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM terminal_commands WHERE vehicle_id = %s ORDER BY id DESC LIMIT %s", (vehicle_id, limit)
    )
    return await cur.fetchall()


async def for_dispatches(conn: Conn, dispatch_ids: Sequence[int]) -> dict[int, CommandRow]:
    cur = conn.cursor(row_factory=class_row(CommandRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM terminal_commands WHERE dispatch_id = ANY(%s) ORDER BY id", (list(dispatch_ids),)
    )
    return {row.dispatch_id: row for row in await cur.fetchall() if row.dispatch_id is not None}


async def latest_per_vehicle(conn: Conn) -> dict[str, CommandRow]:
    cur = conn.cursor(row_factory=class_row(CommandRow))
    await cur.execute(
        f"SELECT DISTINCT ON (vehicle_id) {_COLUMNS} FROM terminal_commands"
        " WHERE created_at > now() - interval '7 days' ORDER BY vehicle_id, id DESC"
    )
    return {row.vehicle_id: row for row in await cur.fetchall()}


async def open_counts(conn: Conn) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT vehicle_id, count(*) FROM terminal_commands WHERE status IN ('queued', 'sent') GROUP BY vehicle_id"
    )
    return {str(v): int(n) for v, n in await cur.fetchall()}


async def queued(conn: Conn, phones: Sequence[str], limit: int) -> list[CommandRow]:
    """The oldest queued commands for these (reachable) terminals."""
    cur = conn.cursor(row_factory=class_row(CommandRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM terminal_commands WHERE status = 'queued' AND phone = ANY(%s) ORDER BY id LIMIT %s",
        (list(phones), limit),
    )
    return await cur.fetchall()


async def claim(
    conn: Conn, command_id: int, *, transport: str, connection: str | None, msg_sn: int | None, ack_observable: bool
) -> bool:
    cur = await conn.execute(
        "UPDATE terminal_commands SET status = 'sent', attempts = attempts + 1, transport = %s, connection = %s,"
        " msg_sn = %s, ack_observable = %s, sent_at = now(), updated_at = now(), error = NULL"
        " WHERE id = %s AND status = 'queued'",
        (transport, connection, msg_sn, ack_observable, command_id),
    )
    return cur.rowcount == 1


async def sent_on(conn: Conn, command_id: int, *, msg_sn: int, connection: str) -> None:
    """The sequence number and connection a claimed command went out with."""
    await conn.execute(
        "UPDATE terminal_commands SET msg_sn = %s, connection = %s WHERE id = %s", (msg_sn, connection, command_id)
    )


async def release(conn: Conn, command_id: int, error: str) -> None:
    """A claimed command that could not be written goes back to the queue."""
    await conn.execute(
        "UPDATE terminal_commands SET status = 'queued', attempts = greatest(attempts - 1, 0), error = %s,"
        " transport = NULL, connection = NULL, msg_sn = NULL, sent_at = NULL, updated_at = now()"
        " WHERE id = %s AND status = 'sent'",
        (error[:200], command_id),
    )


_ANSWERED = (
    "UPDATE terminal_commands SET status = CASE WHEN %(result)s = 0 THEN 'acknowledged' ELSE 'failed' END,"
    " result = %(result)s, acked_at = now(), updated_at = now(),"
    " error = CASE WHEN %(result)s = 0 THEN NULL ELSE 'terminal answered ' || %(result)s END"
)


async def answered(
    conn: Conn, *, phone: str, msg_ids: Sequence[int], msg_sn: int | None, result: int,
    connection: str | None = None, transport: str | None = None,
) -> int | None:  # fmt: skip
    """Record a terminal's answer; the command's id, or ``None`` if it answers
    no command that is out. Without a sequence number (or when none matches,
    EMQX choosing its own numbers) the oldest such command sent is taken."""
    params: dict[str, Any] = {
        "phone": phone, "ids": list(msg_ids), "sn": msg_sn, "result": result, "connection": connection,
        "transport": transport,
    }  # fmt: skip
    scope = (
        " WHERE id = (SELECT id FROM terminal_commands WHERE phone = %(phone)s AND msg_id = ANY(%(ids)s)"
        " AND status = 'sent' AND (%(connection)s::text IS NULL OR connection = %(connection)s)"
        " AND (%(transport)s::text IS NULL OR transport = %(transport)s)"
    )
    if msg_sn is not None:
        cur = await conn.execute(_ANSWERED + scope + " AND msg_sn = %(sn)s ORDER BY id LIMIT 1) RETURNING id", params)
        row = await cur.fetchone()
        if row is not None or connection is not None:
            return None if row is None else int(row[0])
    cur = await conn.execute(_ANSWERED + scope + " ORDER BY sent_at, id LIMIT 1) RETURNING id", params)
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def requeue_connection(conn: Conn, *, phone: str, connection: str, max_attempts: int) -> int:
    """The TCP connection a command went out on closed before the answer:
    send it again on the next one (up to ``max_attempts``)."""
    cur = await conn.execute(
        "UPDATE terminal_commands SET"
        " status = CASE WHEN attempts < %s THEN 'queued' ELSE 'timed_out' END,"
        " error = 'connection closed before the answer', updated_at = now()"
        " WHERE phone = %s AND connection = %s AND status = 'sent'",
        (max_attempts, phone, connection),
    )
    return cur.rowcount


async def expire(conn: Conn, *, ack_timeout_s: float, queue_s: float, max_attempts: int) -> int:
    """Commands queued for too long fail (``expired``); commands sent without
    an answer within ``ack_timeout_s`` go out again, up to ``max_attempts``,
    then time out."""
    cur = await conn.execute(
        "UPDATE terminal_commands SET status = 'failed', error = 'expired: the terminal was not reachable',"
        " updated_at = now() WHERE status = 'queued' AND created_at < now() - make_interval(secs => %s)",
        (queue_s,),
    )
    n = cur.rowcount
    cur = await conn.execute(
        "UPDATE terminal_commands SET status = CASE WHEN attempts < %s THEN 'queued' ELSE 'timed_out' END,"
        " error = 'no answer within ' || %s || ' s', updated_at = now()"
        " WHERE status = 'sent' AND ack_observable AND sent_at < now() - make_interval(secs => %s)",
        (max_attempts, round(ack_timeout_s), ack_timeout_s),
    )
    return n + cur.rowcount


# -- terminal health ----------------------------------------------------------------------

_HEALTH_COLUMNS = (
    "phone", "header_phone", "vehicle_id", "transport", "mqtt_clientid", "peer", "connected", "state", "close_reason",
    "edition", "proto_ver", "plate", "model", "imei", "software_version", "first_seen", "last_connect",
    "last_disconnect", "last_frame", "last_drop", "last_drop_at", "connections", "drops", "tolerated",
)  # fmt: skip
_TIMES = frozenset(("first_seen", "last_connect", "last_disconnect", "last_frame", "last_drop_at"))


def _to_db(row: dict[str, Any]) -> tuple[Any, ...]:
    values: list[Any] = []
    for column in _HEALTH_COLUMNS:
        value = row.get(column)
        if column in _TIMES and value is not None:
            value = datetime.fromtimestamp(value, UTC)
        elif column in ("drops", "tolerated"):
            value = Jsonb(value or {})
        values.append(value)
    return tuple(values)


async def save_health(conn: Conn, rows: Iterable[dict[str, Any]]) -> None:
    columns = ", ".join(_HEALTH_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _HEALTH_COLUMNS if c != "phone")
    placeholders = ", ".join(["%s"] * len(_HEALTH_COLUMNS))
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO terminal_health ({columns}, updated_at) VALUES ({placeholders}, now())"
            f" ON CONFLICT (phone) DO UPDATE SET {updates}, updated_at = now()",
            [_to_db(r) for r in rows],
        )


async def health(conn: Conn) -> list[dict[str, Any]]:
    """Every terminal's health row, times as datetimes."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {', '.join(_HEALTH_COLUMNS)}, updated_at FROM terminal_health ORDER BY phone")
    return await cur.fetchall()


async def health_for_restore(conn: Conn) -> list[dict[str, Any]]:
    """Health rows with times as POSIX seconds, for ``TerminalHealth.restore``."""
    out = []
    for row in await health(conn):
        out.append({k: (v.timestamp() if k in _TIMES and v is not None else v) for k, v in row.items()})
    return out
