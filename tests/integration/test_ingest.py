"""MQTT -> decode -> TimescaleDB, through the real broker and database."""

from __future__ import annotations

import json
import time

import aiomqtt
import psycopg

from tests.fixtures.server import RunningServer
from tests.fixtures.services import MQTT_PORT
from tests.helpers import publish, wait_for


def fix(ts: float, lon: float, lat: float, **extra: object) -> bytes:
    return json.dumps({"ts": ts, "lon": lon, "lat": lat, **extra}).encode()


def count_rows(db: psycopg.Connection[tuple[object, ...]], prefix: str) -> int:
    row = db.execute("SELECT count(*) FROM fixes WHERE vehicle_id LIKE %s", (prefix + "%",)).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


async def test_10000_fixes_stored_exactly_once(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    t0 = time.time() - 3600
    vid = f"{server.prefix}-v"
    messages = [
        (f"{server.prefix}/{vid}{v:03d}/fix", fix(t0 + i * 10, 112.30 + v * 1e-3, 28.55 + i * 1e-5, speed_kmh=30.0))
        for v in range(100)
        for i in range(100)
    ]
    await publish(messages)
    await wait_for(lambda: count_rows(db, vid) >= 10000, timeout=60, what="10,000 rows")
    assert count_rows(db, vid) == 10000

    writer = server.server.writer
    dups_before = writer.stats.duplicates
    await publish(messages[::10])  # 1,000 repeats
    await wait_for(lambda: writer.stats.duplicates - dups_before >= 1000, timeout=30, what="1,000 duplicates")
    assert count_rows(db, vid) == 10000
    assert writer.stats.duplicates - dups_before == 1000

    # vehicles holds the newest position of each vehicle
    row = db.execute(
        "SELECT count(*), min(last_ts), max(last_ts) FROM vehicles WHERE id LIKE %s", (vid + "%",)
    ).fetchone()
    assert row is not None
    assert row[0] == 100
    assert row[1] == row[2]

    # Every message took the client's own PUBLISH decoder (no library fallback).
    stats = server.server.ingest.client.stats
    assert stats.messages_in >= 11000 and stats.fast_path_decodes == stats.messages_in
    assert stats.acks_sent >= 11000 and stats.ack_writes < stats.acks_sent / 10  # PUBACKs go in batches


async def test_batch_payload_and_late_fix(server: RunningServer, db: psycopg.Connection[tuple[object, ...]]) -> None:
    t0 = time.time() - 600
    vid = f"{server.prefix}-b1"
    topic = f"{server.prefix}/{vid}/fix"
    batch = json.dumps([{"ts": t0 + i, "lon": 112.3, "lat": 28.5 + i * 1e-5} for i in range(5)]).encode()
    await publish([(topic, batch)])
    await wait_for(lambda: count_rows(db, vid) == 5, what="5 rows from one batch")
    # A fix older than the last one is stored but marked late (flag 1).
    await publish([(topic, fix(t0 - 60, 112.3, 28.49))])
    await wait_for(lambda: count_rows(db, vid) == 6, what="the late fix")
    flags = db.execute("SELECT flags FROM fixes WHERE vehicle_id = %s ORDER BY ts LIMIT 1", (vid,)).fetchone()
    assert flags == (1,)
    last = db.execute("SELECT extract(epoch FROM last_ts) FROM vehicles WHERE id = %s", (vid,)).fetchone()
    assert last is not None and abs(float(last[0]) - (t0 + 4)) < 1e-3  # type: ignore[arg-type]


BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    ("not_json", b"{not json", "not_json"),
    ("not_object", b"42", "not_object"),
    ("missing_time", b'{"lon": 112.3, "lat": 28.5}', "ts_missing"),
    ("unparsable_time", b'{"ts": "yesterday", "lon": 112.3, "lat": 28.5}', "ts_invalid"),
    ("future", None, "ts_future"),
    ("lat_out_of_range", None, "position_invalid"),
    ("nan", None, "position_invalid"),
    ("overflow_inf", None, "position_invalid"),
    ("zero", None, "position_zero"),
    ("wrong_type", None, "wrong_type"),
    ("vehicle_mismatch", None, "vehicle_mismatch"),
    ("oversize", b'{"ts": 1, "pad": "' + b"x" * 300000 + b'"}', "oversize"),
    ("empty_batch", b"[]", "empty_batch"),
]


def _bad_payload(name: str, now: float) -> bytes:
    base = {"ts": now - 5, "lon": 112.3, "lat": 28.5}
    variants = {
        "future": {**base, "ts": now + 3600},
        "lat_out_of_range": {**base, "lat": 91.0},
        "zero": {**base, "lon": 0, "lat": 0},
        "wrong_type": {**base, "speed_kmh": "fast"},
        "vehicle_mismatch": {**base, "vehicle_id": "someone-else"},
    }
    if name == "nan":
        return f'{{"ts": {now - 5}, "lon": NaN, "lat": 28.5}}'.encode()
    if name == "overflow_inf":
        return f'{{"ts": {now - 5}, "lon": 1e999, "lat": 28.5}}'.encode()
    return json.dumps(variants[name]).encode()


async def test_every_bad_input_is_counted_and_ingest_goes_on(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    srv = server.server
    now = time.time()
    vid = f"{server.prefix}-bad"
    topic = f"{server.prefix}/{vid}/fix"
    dead: list[dict[str, object]] = []
    async with aiomqtt.Client("127.0.0.1", MQTT_PORT) as listener:
        await listener.subscribe(f"{server.prefix}-dead/#", qos=1)
        for name, payload, reason in BAD_INPUTS:
            before = srv.pipeline.rejects.total[reason]
            await publish([(topic, payload if payload is not None else _bad_payload(name, now))])
            await wait_for(
                lambda r=reason, b=before: srv.pipeline.rejects.total[r] == b + 1,
                timeout=10,
                what=f"{name} rejected as {reason}",
            )
            msg = await listener.messages.__anext__()
            body = json.loads(msg.payload)  # type: ignore[arg-type]
            assert msg.topic.value == f"{server.prefix}-dead/{reason}"
            assert body["reason"] == reason and body["topic"] == topic
            dead.append(body)

        # A batch with some bad items: good ones kept, bad ones rejected one by one.
        mixed = json.dumps(
            [
                {"ts": now - 3, "lon": 112.3, "lat": 28.5},
                {"ts": now - 2, "lon": 0, "lat": 0},
                {"ts": now - 1, "lon": 112.3},
                {"ts": now, "lon": 112.31, "lat": 28.51},
            ]
        ).encode()
        zero_before = srv.pipeline.rejects.total["position_zero"]
        await publish([(topic, mixed)])
        await wait_for(lambda: count_rows(db, vid) == 2, what="the 2 good items of the mixed batch")
        assert srv.pipeline.rejects.total["position_zero"] == zero_before + 1
        assert srv.pipeline.rejects.total["position_missing"] >= 1
        assert [await listener.messages.__anext__() for _ in range(2)]
    assert {d["reason"] for d in dead} == {r for _, _, r in BAD_INPUTS}
    assert srv.mqtt_connected
