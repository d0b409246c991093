"""The live hub without a network: filters, frames encoded once and shared, lagging
clients conflated, alerts never conflated, clients dropped only for an alert backlog."""

from __future__ import annotations

import asyncio
import json

import pytest

from gpsd_server import wire
from gpsd_server.sinks.hub import (
    FRAME_MAX_CHARS,
    WAKE,
    Client,
    LiveHub,
    LivePosition,
    SubscriptionError,
    parse_subscription,
)

T0 = 1_800_000_000.0


def pos(
    vid: str, lon: float, lat: float, *, cls: str = "muck_truck", ts: float = T0, speed: float = 30.0
) -> LivePosition:
    return LivePosition(vid, ts, lon, lat, speed, 90.0, cls, f"湘A{vid}")


def drain(client: Client) -> list[dict[str, object]]:
    """What the client's sender would send now, in order, frames flattened to
    their positions (as the page reads them)."""
    out: list[dict[str, object]] = [json.loads(data) for data in client.urgent]
    client.urgent.clear()
    while not client.queue.empty():
        data: str | None = client.queue.get_nowait()
        if data is WAKE:
            continue
        if data is not client.pending_frame:
            out.append(json.loads(data))
            continue
        while data is not None:
            out += flatten(json.loads(data))
            data = client.next_frame()
    return out


def flatten(msg: dict[str, object]) -> list[dict[str, object]]:
    return list(msg["positions"]) if msg["type"] == "positions" else [msg]  # type: ignore[call-overload]


def raw(client: Client) -> list[str]:
    out = list(client.urgent)
    client.urgent.clear()
    while not client.queue.empty():
        if (data := client.queue.get_nowait()) is not WAKE:
            out.append(data)
    return out


def sos(vid: str, n: int, *, cls: str = "muck_truck") -> wire.Alert:
    return wire.Alert(
        id=f"{vid}-{n}", kind="sos", key="alarm:sos", severity="critical", vehicle_id=vid, vehicle_class=cls,
        ts=wire.utc(T0 + n), raised_at=wire.utc(T0 + n), lon=112.3, lat=28.5, phase="start",
    )  # fmt: skip


def test_positions_reach_only_clients_whose_filter_admits_them_in_one_frame() -> None:
    hub = LiveHub(moving_kmh=5.0)
    everything, trucks_near = hub.add_client(), hub.add_client()
    assert everything is not None and trucks_near is not None
    trucks_near.subscription = parse_subscription({"bbox": [112.0, 28.0, 112.5, 28.6], "classes": ["muck_truck"]})
    hub.publish_positions([pos("A", 112.3, 28.5), pos("B", 113.0, 28.5), pos("C", 112.3, 28.5, cls="patrol")])
    [frame] = raw(everything)
    msg = json.loads(frame)
    assert msg["type"] == "positions" and [m["vehicle_id"] for m in msg["positions"]] == ["A", "B", "C"]
    assert msg == json.loads(wire.encode(wire.Positions(positions=[p.message(5.0) for p in hub.positions.values()])))
    near = drain(trucks_near)
    assert near == [
        {
            "type": "position",
            "vehicle_id": "A",
            "plate": "湘AA",
            "class": "muck_truck",
            "ts": "2027-01-15T08:00:00Z",
            "lon": 112.3,
            "lat": 28.5,
            "speed": 30.0,
            "heading": 90.0,
            "status": "moving",
        }
    ]  # fmt: skip  -- a frame of one position is the plain position message
    assert hub.positions_encoded == 3


def test_clients_with_the_same_filter_share_one_frame_object() -> None:
    hub = LiveHub()
    clients = [hub.add_client() for _ in range(3)]
    assert all(clients)
    patrol = hub.add_client()
    assert patrol is not None
    patrol.subscription = parse_subscription({"classes": ["patrol"]})
    hub.publish_positions([pos("A", 112.3, 28.5), pos("B", 112.3, 28.5), pos("C", 112.3, 28.5, cls="patrol")])
    frames = [raw(c)[0] for c in clients if c is not None]
    assert frames[0] is frames[1] is frames[2]
    assert hub.frames_built == 2 and hub.positions_encoded == 3
    assert [m["vehicle_id"] for m in drain(patrol)] == ["C"]


async def test_positions_of_one_flush_interval_go_in_one_frame() -> None:
    hub = LiveHub(flush_ms=30)
    client = hub.add_client()
    assert client is not None
    hub.publish_positions([pos("A", 112.3, 28.5)])
    hub.publish_positions([pos("B", 112.3, 28.5)])
    assert client.queue.empty()  # waits for the flush
    await asyncio.sleep(0.1)
    [frame] = raw(client)
    assert [m["vehicle_id"] for m in json.loads(frame)["positions"]] == ["A", "B"]


def test_a_lagging_client_gets_the_latest_position_per_vehicle_and_a_fast_one_every_position() -> None:
    hub = LiveHub(send_queue=10)
    slow, fast = hub.add_client(), hub.add_client()
    assert slow is not None and fast is not None
    seen_fast: list[dict[str, object]] = []
    for i in range(1000):  # far more rounds than the send queue holds
        hub.publish_positions([pos("A", 112.3, 28.5, ts=T0 + i), pos("B", 112.4, 28.5, ts=T0 + i)])
        seen_fast += drain(fast)
    assert len(seen_fast) == 2000 and hub.clients_dropped == 0
    got = drain(slow)  # the first frame, then one frame with the latest of each vehicle
    assert [(m["vehicle_id"], m["ts"]) for m in got] == [
        ("A", "2027-01-15T08:00:00Z"), ("B", "2027-01-15T08:00:00Z"),
        ("A", "2027-01-15T08:16:39Z"), ("B", "2027-01-15T08:16:39Z"),
    ]  # fmt: skip
    assert slow.conflated_positions == 2 * 998 and slow.pending_frame is None


def test_alerts_are_never_conflated_and_a_client_is_dropped_only_when_they_overflow() -> None:
    hub = LiveHub(send_queue=10)
    slow, fast = hub.add_client(), hub.add_client()
    assert slow is not None and fast is not None
    got: list[dict[str, object]] = []
    for i in range(10):
        hub.publish_positions([pos("A", 112.3, 28.5, ts=T0 + i)])
        hub.publish_alerts([sos("A", i)])
        got += drain(fast)
    assert [m["id"] for m in got if m["type"] == "alert"] == [f"A-{i}" for i in range(10)]
    assert hub.clients_dropped == 0  # the slow one holds 10 alerts and one frame: still within its queue
    hub.publish_alerts([sos("A", 10)])
    assert hub.clients_dropped == 1 and hub.client_count == 1
    assert slow.dropped == "too slow: send queue full" and raw(slow) == [""]
    hub.publish_alerts([sos("A", 11)])
    assert [m["id"] for m in drain(fast)] == ["A-10", "A-11"]


async def test_a_backlog_past_half_the_queue_goes_out_as_one_batch_frame() -> None:
    hub = LiveHub(send_queue=6, flush_ms=10_000)  # no flush during the test
    client = hub.add_client()
    assert client is not None
    hub.publish_alerts([warning("A", 0)])
    hub.publish_alerts([warning("A", 1)])
    assert json.loads(await client.outgoing() or "")["id"] == "A-0"  # a short backlog: one by one
    assert json.loads(await client.outgoing() or "")["id"] == "A-1"
    hub.publish_alerts([warning("A", 1), warning("B", 2)])
    hub.publish_alerts([warning("C", 3)])
    hub.publish_alerts([warning("D", 4)])
    hub.reply(client, b'{"type":"error","error":"x"}')
    batch = json.loads(await client.outgoing() or "")
    assert batch["type"] == "batch"
    assert [m.get("id", m["type"]) for m in batch["messages"]] == ["A-1", "B-2", "C-3", "D-4", "error"]
    assert client.queue.empty()
    # A critical alert is not batched with them: it goes first, on its own.
    hub.publish_alerts([warning("E", 5), warning("F", 6), warning("G", 7), warning("H", 8)])
    hub.publish_alerts([sos("S", 9)])
    assert json.loads(await client.outgoing() or "")["id"] == "S-9"
    batch = json.loads(await client.outgoing() or "")
    assert [m["id"] for m in batch["messages"]] == ["E-5", "F-6", "G-7", "H-8"]


async def test_zone_records_wait_for_the_flush_and_alerts_do_not() -> None:
    hub = LiveHub(flush_ms=10_000)
    client = hub.add_client()
    assert client is not None
    zone = wire.ZoneRecord(
        id="z", kind="zone", key="zone:G1", severity="info", vehicle_id="A", ts=wire.utc(T0), raised_at=wire.utc(T0),
        lon=112.3, lat=28.5, phase="start", zone_id="G1",
    )  # fmt: skip
    hub.publish_alerts([zone, sos("A", 0)])
    assert [m["type"] for m in drain(client)] == ["alert"]
    hub.flush()
    assert [m["type"] for m in drain(client)] == ["zone"]


async def test_a_flush_of_zone_records_takes_one_place_in_the_queue() -> None:
    hub = LiveHub(send_queue=10, flush_ms=10_000)
    client = hub.add_client()
    assert client is not None
    zones = [
        wire.ZoneRecord(
            id=f"z{i}", kind="zone", key=f"zone:G{i}", severity="info", vehicle_id="A", ts=wire.utc(T0 + i),
            raised_at=wire.utc(T0 + i), lon=112.3, lat=28.5, phase="start", zone_id=f"G{i}",
        )
        for i in range(100)
    ]  # fmt: skip
    hub.publish_alerts(zones)
    hub.flush()
    assert hub.clients_dropped == 0 and client.queue.qsize() == 1
    [frame] = raw(client)
    batch = json.loads(frame)
    assert batch["type"] == "batch" and [m["id"] for m in batch["messages"]] == [f"z{i}" for i in range(100)]


def test_a_cycle_of_alerts_takes_a_few_places_in_the_queue_and_none_is_lost() -> None:
    """500 alerts of one cycle in a queue of 10: batch frames of at most
    FRAME_MAX_CHARS (a critical alert raised next waits for one, not for all)."""
    hub = LiveHub(send_queue=10)
    client = hub.add_client()
    assert client is not None
    hub.publish_alerts([sos(f"V{i}", i) for i in range(500)])
    frames = raw(client)
    assert hub.clients_dropped == 0 and 1 < len(frames) <= 5
    assert all(len(f) <= FRAME_MAX_CHARS + 2000 for f in frames)
    ids = [m["id"] for f in frames for m in json.loads(f)["messages"]]
    assert ids == [f"V{i}-{i}" for i in range(500)]


def test_an_older_position_does_not_replace_the_last_one_and_the_snapshot_has_every_vehicle() -> None:
    hub = LiveHub()
    hub.publish_positions([pos("A", 112.3, 28.5, ts=T0 + 10), pos("A", 112.4, 28.5, ts=T0)])
    assert hub.positions["A"].ts == T0 + 10
    client = hub.add_client()
    assert client is not None
    snapshot = json.loads(hub.snapshot(client, limit=10))
    assert snapshot["type"] == "snapshot" and [v["lon"] for v in snapshot["vehicles"]] == [112.3]


def test_alerts_follow_the_same_filters() -> None:
    hub = LiveHub()
    patrol_only = hub.add_client()
    assert patrol_only is not None
    patrol_only.subscription = parse_subscription({"classes": ["patrol"]})
    hub.publish_alerts([sos("A", 0)])
    assert drain(patrol_only) == []


@pytest.mark.parametrize(
    "msg",
    [{"bbox": [1, 2, 3]}, {"bbox": [3, 0, 1, 1]}, {"classes": "patrol"}, {"vehicles": [1]}, {"bbox": [0, 0, "x", 1]}],
)
def test_a_malformed_subscription_names_the_field(msg: dict[str, object]) -> None:
    with pytest.raises(SubscriptionError) as err:
        parse_subscription(msg)
    assert next(iter(msg)) in str(err.value)


def test_the_hub_limits_its_clients() -> None:
    hub = LiveHub(max_clients=2)
    assert hub.add_client() and hub.add_client() and hub.add_client() is None


def test_cases_reach_every_client_that_may_see_cases_whatever_its_bbox() -> None:
    from datetime import UTC, datetime

    hub = LiveHub(moving_kmh=5.0)
    narrow, company = hub.add_client(), hub.add_client()
    assert narrow is not None and company is not None
    narrow.subscription = parse_subscription({"bbox": [0.0, 0.0, 1.0, 1.0]})
    company.cases = False  # an account that may not see 12319 cases
    at = datetime(2027, 1, 15, tzinfo=UTC)
    case = wire.Case(
        id=1, number="20270115-0001", channel="hotline", category="other", category_name="其他", priority="normal",
        description="", address="", reporter="", lon=112.3, lat=28.5, place=None, district_id=None, district=None,
        grid_id=None, grid=None, state="accepted", vehicle_id=None, plate=None, accepted_at=at, accepted_by="op",
        dispatched_at=None, assigned_at=None, arrived_at=None, arrival_source=None, arrival_distance_m=None,
        on_site=None, handled_at=None, called_back_at=None, closed_at=None, cancelled_at=None, command=None, steps=[],
        late=False, actions=["dispatch"], events=1, updated_at=at,
    )  # fmt: skip
    hub.publish_cases([case])
    assert [(m["type"], m["number"]) for m in drain(narrow)] == [("case", "20270115-0001")]
    assert drain(company) == []


def test_a_scoped_client_gets_only_its_vehicles_whatever_it_subscribes_to() -> None:
    """A company account's scope: positions, alerts and snapshots of its own
    vehicles only, also after a subscribe naming others; the frames of
    unscoped clients are not changed by it."""
    hub = LiveHub()
    city, company = hub.add_client(), hub.add_client()
    assert city is not None and company is not None
    mine = frozenset({"A"})
    company.subscription = parse_subscription({}, scope=mine)
    hub.publish_positions([pos("A", 112.3, 28.5), pos("B", 112.31, 28.5)])
    hub.publish_alerts([sos("B", 1), sos("A", 2)])
    # (critical alerts go before the frame of positions queued ahead of them)
    assert [(m["type"], m["vehicle_id"]) for m in drain(city)] == [
        ("alert", "B"), ("alert", "A"), ("position", "A"), ("position", "B"),
    ]  # fmt: skip
    assert [m["vehicle_id"] for m in drain(company)] == ["A", "A"]
    company.subscription = parse_subscription({"vehicles": ["A", "B"], "bbox": [112, 28, 113, 29]}, scope=mine)
    assert company.subscription.scope == mine
    snapshot = json.loads(hub.snapshot(company, 100))
    assert [v["vehicle_id"] for v in snapshot["vehicles"]] == ["A"]
    hub.publish_positions([pos("B", 112.32, 28.5, ts=T0 + 1)])
    assert drain(company) == [] and [m["vehicle_id"] for m in drain(city)] == ["B"]


async def test_an_alert_goes_before_the_frame_of_positions_queued_ahead_of_it() -> None:
    """Found by the latency benchmark: with 100 clients reading every position,
    an alert waited behind a ~40 KB frame of positions on each busy socket."""
    hub = LiveHub(send_queue=10)
    client = hub.add_client()
    assert client is not None
    hub.publish_positions([pos("A", 112.3, 28.5, ts=T0)])
    hub.publish_alerts([sos("A", 0)])
    first = await client.outgoing()
    assert first is not None and json.loads(first)["id"] == "A-0"
    frame = await client.outgoing()
    assert frame is client.pending_frame and frame is not None and json.loads(frame)["type"] == "position"
    # While that frame is on its way, newer positions are conflated; an alert raised
    # meanwhile goes before them too.
    hub.publish_positions([pos("A", 112.3, 28.5, ts=T0 + 1), pos("B", 112.4, 28.5, ts=T0 + 1)])
    hub.publish_alerts([sos("B", 1)])
    client.frame_sent()
    got = [json.loads(await client.outgoing() or "") for _ in range(2)]
    assert [m["type"] for m in got] == ["alert", "positions"]
    assert [p["vehicle_id"] for p in got[1]["positions"]] == ["A", "B"]
    client.frame_sent()
    assert client.pending_frame is None and client.queue.empty()
    hub.publish_alerts([sos("C", 2)])
    assert json.loads(await client.outgoing() or "")["id"] == "C-2"


def test_the_lean_form_carries_the_same_positions_in_a_third_of_the_bytes() -> None:
    hub = LiveHub()
    lean, full = hub.add_client(), hub.add_client()
    assert lean is not None and full is not None
    lean.rows = True
    batch = [pos(f"V{i:04d}", 112.3 + i * 1e-4, 28.5, ts=T0 + i, speed=31.26) for i in range(200)]
    hub.publish_positions(batch)
    [rows_text], [objects_text] = raw(lean), raw(full)
    rows, objects = json.loads(rows_text), json.loads(objects_text)
    assert rows["type"] == "rows" and rows["fields"] == list(wire.ROW_FIELDS)
    as_objects = [dict(zip(rows["fields"], r, strict=True)) for r in rows["rows"]]
    for r, o in zip(as_objects, objects["positions"], strict=True):
        assert (r["vehicle_id"], r["lon"], r["lat"], r["speed"], r["heading"], r["class"]) == (
            o["vehicle_id"], o["lon"], o["lat"], o["speed"], o["heading"], o["class"],
        )  # fmt: skip
        assert wire.utc(r["ts"]) == wire.utc(T0 + int(r["vehicle_id"][1:]))
    assert len(rows_text.encode()) * 2.5 < len(objects_text.encode())
    # A lagging lean client is conflated in its own form.
    lean.pending_frame = "busy"
    hub.publish_positions([pos("V0001", 112.5, 28.5, ts=T0 + 500)])
    assert json.loads(lean.next_frame() or "")["rows"][0][:2] == ["V0001", T0 + 500]


async def test_a_client_without_zone_records_still_gets_every_alert() -> None:
    hub = LiveHub(flush_ms=10_000)
    quiet, everything = hub.add_client(), hub.add_client()
    assert quiet is not None and everything is not None
    quiet.zones = False
    zone = wire.ZoneRecord(
        id="z", kind="zone", key="zone:G1", severity="info", vehicle_id="A", ts=wire.utc(T0), raised_at=wire.utc(T0),
        lon=112.3, lat=28.5, phase="start", zone_id="G1",
    )  # fmt: skip
    hub.publish_alerts([zone, sos("A", 0)])
    hub.flush()
    assert [m["type"] for m in drain(quiet)] == ["alert"]
    assert [m["type"] for m in drain(everything)] == ["alert", "zone"]
    hub.remove_client(everything)
    hub.publish_alerts([zone])  # nobody reads zone records: not even kept for the flush
    hub.flush()
    assert drain(quiet) == []


def warning(vid: str, n: int) -> wire.Alert:
    return wire.Alert(
        id=f"{vid}-{n}", kind="overspeed", key="overspeed", severity="warning", vehicle_id=vid,
        vehicle_class="muck_truck", ts=wire.utc(T0 + n), raised_at=wire.utc(T0 + n), lon=112.3, lat=28.5,
        phase="start",
    )  # fmt: skip


def test_a_critical_alert_goes_before_a_burst_of_others_and_critical_ones_keep_their_order() -> None:
    """Found by the latency benchmark after a restart: thousands of alert ends
    queued for each client, an SOS raised meanwhile waited seconds behind them."""
    hub = LiveHub(send_queue=2000)
    client = hub.add_client()
    assert client is not None
    hub.publish_alerts([warning(f"W{i}", i) for i in range(3000)])  # a burst: batch frames
    hub.publish_alerts([sos("A", 0)])
    hub.publish_alerts([warning("X", 1), sos("B", 1), sos("C", 2)])
    got = drain(client)
    flat = [m for msg in got for m in (msg["messages"] if msg["type"] == "batch" else [msg])]  # type: ignore[attr-defined]
    assert [m["id"] for m in flat[:3]] == ["A-0", "B-1", "C-2"]
    assert [m["id"] for m in flat[3:]] == [f"W{i}-{i}" for i in range(3000)] + ["X-1"]


async def test_a_sender_with_a_backlog_takes_turns_with_the_loop() -> None:
    """Each ``outgoing()`` lets the rest of the loop run, even with the next
    message ready: a sender with a backlog must not hold ingest and the other
    clients until it has sent it all."""
    hub = LiveHub(send_queue=1000, flush_ms=10_000)
    client = hub.add_client()
    assert client is not None
    hub.publish_alerts([warning(f"V{i}", i) for i in range(100)])  # a backlog, well under half the queue
    hub.publish_alerts([sos("S", 100)])
    turns = 0

    async def elsewhere() -> None:  # the rest of the loop: ingest, other clients
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(elsewhere())
    await asyncio.sleep(0)
    between = []
    for _ in range(101):
        before = turns
        assert await client.outgoing()
        between.append(turns - before)
    other.cancel()
    assert client.queue.empty() and not client.urgent
    assert min(between) >= 1, f"{between.count(0)} of 101 messages taken without a loop turn"
