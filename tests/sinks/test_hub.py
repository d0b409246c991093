"""The live hub without a network: filters, snapshot, encoding once, slow clients dropped."""

from __future__ import annotations

import json

import pytest

from gpsd_server import wire
from gpsd_server.sinks.hub import LiveHub, LivePosition, SubscriptionError, parse_subscription

T0 = 1_800_000_000.0


def pos(
    vid: str, lon: float, lat: float, *, cls: str = "muck_truck", ts: float = T0, speed: float = 30.0
) -> LivePosition:
    return LivePosition(vid, ts, lon, lat, speed, 90.0, cls, f"湘A{vid}")


def drain(client: object) -> list[dict[str, object]]:
    queue = client.queue  # type: ignore[attr-defined]
    out = []
    while not queue.empty():
        out.append(json.loads(queue.get_nowait()))
    return out


def test_positions_reach_only_clients_whose_filter_admits_them_and_are_encoded_once() -> None:
    hub = LiveHub(moving_kmh=5.0)
    everything, trucks_near = hub.add_client(), hub.add_client()
    assert everything is not None and trucks_near is not None
    trucks_near.subscription = parse_subscription({"bbox": [112.0, 28.0, 112.5, 28.6], "classes": ["muck_truck"]})
    hub.publish_positions([pos("A", 112.3, 28.5), pos("B", 113.0, 28.5), pos("C", 112.3, 28.5, cls="patrol")])
    assert [m["vehicle_id"] for m in drain(everything)] == ["A", "B", "C"]
    near = drain(trucks_near)
    assert [m["vehicle_id"] for m in near] == ["A"]
    assert near[0] == {
        "type": "position", "vehicle_id": "A", "plate": "湘AA", "class": "muck_truck", "ts": "2027-01-15T08:00:00Z",
        "lon": 112.3, "lat": 28.5, "speed": 30.0, "heading": 90.0, "status": "moving",
    }  # fmt: skip


def test_an_older_position_does_not_replace_the_last_one_and_the_snapshot_has_every_vehicle() -> None:
    hub = LiveHub()
    hub.publish_positions([pos("A", 112.3, 28.5, ts=T0 + 10), pos("A", 112.4, 28.5, ts=T0)])
    assert hub.positions["A"].ts == T0 + 10
    client = hub.add_client()
    assert client is not None
    snapshot = json.loads(hub.snapshot(client, limit=10))
    assert snapshot["type"] == "snapshot" and [v["lon"] for v in snapshot["vehicles"]] == [112.3]


def test_a_client_that_does_not_read_is_dropped_and_told_why() -> None:
    hub = LiveHub(send_queue=10)
    slow, fast = hub.add_client(), hub.add_client()
    assert slow is not None and fast is not None
    for i in range(11):
        hub.publish_positions([pos("A", 112.3, 28.5, ts=T0 + i)])
        drain(fast)
    assert hub.clients_dropped == 1 and hub.client_count == 1
    assert slow.dropped == "too slow: send queue full" and slow.queue.get_nowait() == b""


def test_alerts_follow_the_same_filters() -> None:
    hub = LiveHub()
    patrol_only = hub.add_client()
    assert patrol_only is not None
    patrol_only.subscription = parse_subscription({"classes": ["patrol"]})
    alert = wire.Alert(
        id="x", kind="sos", key="alarm:sos", severity="critical", vehicle_id="A", vehicle_class="muck_truck",
        ts=wire.utc(T0), raised_at=wire.utc(T0), lon=112.3, lat=28.5,
    )  # fmt: skip
    hub.publish_alerts([alert])
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
