"""The hub feed's own logic, without a broker: frames round-trip through
their encoding, an API node's hub gets each position and alert state once
however often a redelivery repeats it, and a desk update goes to its own
clients at once and out to the other nodes."""

from __future__ import annotations

import asyncio

from gpsd_server import wire
from gpsd_server.cluster.feed import BrokerHub, HubFrame, HubListener, _decode, _encode
from gpsd_server.settings import ClusterSettings
from gpsd_server.sinks.hub import LiveHub, LivePosition


def _alert(alert_id: str, phase: str, state: str = "open", cls: type[wire.Alert] = wire.Alert) -> wire.Alert:
    return cls(
        id=alert_id, kind="sos", key="alarm:sos", phase=phase, severity="critical",  # type: ignore[arg-type]
        vehicle_id="V1", ts=wire.utc(1_700_000_000.0), raised_at=wire.utc(1_700_000_001.0), lon=112.3, lat=28.5,
        state=state,
    )  # fmt: skip


def _pos(ts: float) -> LivePosition:
    return LivePosition("V1", ts, 112.3, 28.5, 30.0, 90.0, "muck_truck", "湘A·1", 0)


def test_a_frame_round_trips_with_positions_alerts_and_zone_records() -> None:
    frame = HubFrame(
        origin="w1", positions=[_pos(1.0)], alerts=[_alert("a", "start"), _alert("z", "start", cls=wire.ZoneRecord)]
    )
    back = _decode(_encode(frame))
    assert back == frame
    assert [type(a) for a in back.alerts] == [wire.Alert, wire.ZoneRecord]


def test_a_worker_hub_hands_out_what_the_pipeline_published_once() -> None:
    hub = BrokerHub(ClusterSettings(), origin="w1")
    assert hub.take() is None
    hub.publish_positions([_pos(1.0)])
    hub.publish_alerts([_alert("a", "start")])
    frame = hub.take()
    assert frame is not None and len(frame.positions) == 1 and frame.alerts[0].id == "a"
    assert hub.take() is None


async def test_an_api_node_drops_what_a_redelivery_repeats() -> None:
    hub = LiveHub(max_clients=10, send_queue=100, moving_kmh=5.0)
    node = HubListener(ClusterSettings(), hub=hub, origin="api1")
    frame = HubFrame(origin="w1", positions=[_pos(1.0), _pos(2.0)], alerts=[_alert("a", "start")])
    node.receive(frame)
    node.receive(frame)  # the worker died after the publish, before its ack: the frame comes again
    node.receive(HubFrame(origin="w2", positions=[_pos(1.5)]))  # older than what the map shows
    assert hub.positions["V1"].ts == 2.0
    assert node.duplicates == 3 + 1  # two positions and the alert again, then the older position
    node.receive(HubFrame(origin="w2", alerts=[_alert("a", "end")]))
    assert node.duplicates == 4  # the end is news


async def test_a_desk_update_reaches_its_own_hub_and_is_queued_for_the_other_nodes() -> None:
    hub = LiveHub(max_clients=10, send_queue=100, moving_kmh=5.0)
    node = HubListener(ClusterSettings(), hub=hub, origin="api1")
    client = hub.add_client()
    assert client is not None
    acked = _alert("a", "update", state="acked")
    node.publish_alerts([acked])
    assert node._out.qsize() == 1 and node._out.get_nowait().alerts == [acked]
    assert '"state":"acked"' in (await asyncio.wait_for(client.outgoing(), 1) or "")
    node.receive(HubFrame(origin="api2", alerts=[acked]))  # the same update coming back from another node
    assert node.duplicates == 1
