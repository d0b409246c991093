"""One batch cycle without a broker or database: decode, engine, ledger, hub,
with the track sink recording what it was given."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable, Sequence

import msgspec

from gpsd_server.core.decode import Decoder, TopicRouter
from gpsd_server.core.engine import Engine
from gpsd_server.directory import VehicleDirectory
from gpsd_server.ledger import AlertLedger
from gpsd_server.model import Fix, FixFlag
from gpsd_server.pipeline import Incoming, Pipeline
from gpsd_server.settings import IngestSettings
from gpsd_server.sinks.hub import WAKE, Client, LiveHub
from gpsd_server.store.batch import AlertRow, FlagCorrection
from tests.fixtures import city as test_city

NOW = test_city.NIGHT + 60


class Recording:
    """A track sink that is durable at once and remembers what it got."""

    def __init__(self) -> None:
        self.fixes: list[Fix] = []
        self.alerts: list[AlertRow] = []
        self.corrections: list[FlagCorrection] = []

    async def put(
        self, fixes: Sequence[Fix], alerts: Sequence[AlertRow] = (), corrections: Sequence[FlagCorrection] = ()
    ) -> Awaitable[None]:
        self.fixes += fixes
        self.alerts += alerts
        self.corrections += corrections
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def sent_to(client: Client) -> list[dict[str, object]]:
    """What the hub queued for a client: its critical alerts' lane first, then its queue."""
    out = [json.loads(data) for data in client.urgent]
    while not client.queue.empty():
        if (data := client.queue.get_nowait()) is not WAKE:
            out.append(json.loads(data))
    return out


def pipeline() -> tuple[Pipeline, Recording, LiveHub, list[tuple[str, bytes]]]:
    city = test_city.test_city()
    decoder = Decoder(TopicRouter(native="fleet"), IngestSettings())
    decoder.use_city(city)
    directory = VehicleDirectory()
    directory.use_city(city)
    sink, hub = Recording(), LiveHub()
    p = Pipeline(
        decoder=decoder, engine=Engine(city=city, tz=test_city.TZ), ledger=AlertLedger(), directory=directory,
        writer=sink, hub=hub, dead_letter_topic="dead", clock=lambda: NOW,
    )  # fmt: skip
    dead: list[tuple[str, bytes]] = []

    async def dead_letter(messages: Sequence[tuple[str, bytes]]) -> None:
        dead.extend(messages)

    p.dead_letter = dead_letter
    return p, sink, hub, dead


def payload(items: list[dict[str, object]]) -> bytes:
    return json.dumps(items).encode()


async def test_good_fixes_are_stored_and_published_bad_items_rejected_and_dead_lettered() -> None:
    p, sink, hub, dead = pipeline()
    client = hub.add_client()
    assert client is not None
    lon, lat = test_city.lonlat(300, 0)
    batch = [
        Incoming("fleet/MT-001/fix", payload([{"ts": NOW - 20, "lon": lon, "lat": lat}, {"ts": "soon"}])),
        Incoming("fleet/MT-001/fix", b"{"),
        Incoming("elsewhere/x", b"{}"),
    ]
    durable = await p.handle(batch)
    await durable
    assert [f.ts for f in sink.fixes] == [NOW - 20]
    assert p.fixes_accepted == 1 and dict(p.rejects.total) == {"ts_invalid": 1, "not_json": 1, "unknown_topic": 1}
    assert [t for t, _ in dead] == ["dead/ts_invalid", "dead/not_json", "dead/unknown_topic"]
    assert json.loads(dead[0][1])["index"] == 1
    sent = sent_to(client)
    [position] = [m for m in sent if m["type"] == "position"]
    assert position["plate"] == test_city.VEHICLES["vehicles"][0]["plate"]
    assert {m["type"] for m in sent} == {"position", "zone"}  # entering the grid is a zone record, not an alert


async def test_zone_records_are_stored_but_not_built_when_no_client_reads_them() -> None:
    """The page connects with ``zones=false``: a dense city's zone records are
    stored and counted, and no message is made for them; an alert still is."""
    p, sink, hub, _ = pipeline()
    published: list[object] = []
    original = hub.publish_alerts

    def publish(alerts: Iterable[object]) -> None:
        items = list(alerts)
        published.extend(items)
        original(items)  # type: ignore[arg-type]

    hub.publish_alerts = publish  # type: ignore[method-assign]
    page = hub.add_client()
    assert page is not None
    page.zones = False
    lon, lat = test_city.lonlat(300, 0)
    items = [{"ts": NOW - 30, "lon": lon, "lat": lat, "alarm": 1}, {"ts": NOW - 20, "lon": lon, "lat": lat}]
    await p.handle([Incoming("fleet/MT-001/fix", payload(items))])
    assert {a.event.kind for a in sink.alerts} == {"zone", "sos"}  # the grid entered is stored
    assert [(type(a).__name__, a.kind) for a in published] == [("Alert", "sos"), ("Alert", "sos")]  # type: ignore[attr-defined]
    assert {m["type"] for m in sent_to(page)} == {"positions", "alert"}

    desk = hub.add_client()  # a client that reads them: the next zone record is built and sent
    assert desk is not None
    await p.handle([Incoming("fleet/PT-001/fix", payload([{"ts": NOW - 10, "lon": lon, "lat": lat}]))])
    hub.flush()
    assert [(type(a).__name__, a.vehicle_id) for a in published[2:]] == [("ZoneRecord", "PT-001")]  # type: ignore[attr-defined]
    assert [m["zone_id"] for m in sent_to(desk) if m["type"] == "zone"] == ["G1"]


async def test_a_late_fix_is_stored_flagged_and_not_published_live() -> None:
    p, sink, hub, _ = pipeline()
    lon, lat = test_city.lonlat(300, 0)
    await p.handle([Incoming("fleet/MT-001/fix", payload([{"ts": NOW - 10, "lon": lon, "lat": lat}]))])
    await p.handle([Incoming("fleet/MT-001/fix", payload([{"ts": NOW - 30, "lon": lon, "lat": lat}]))])
    assert [bool(f.flags & FixFlag.LATE) for f in sink.fixes] == [False, True]
    assert p.fixes_late == 1 and hub.positions["MT-001"].ts == NOW - 10


async def test_an_alert_and_its_end_share_one_id_and_reach_the_hub() -> None:
    p, sink, hub, _ = pipeline()
    client = hub.add_client()
    assert client is not None
    lon, lat = test_city.lonlat(300, 0)
    items = [{"ts": NOW - 30, "lon": lon, "lat": lat, "alarm": 1}, {"ts": NOW - 20, "lon": lon, "lat": lat}]
    await p.handle([Incoming("fleet/MT-001/fix", payload(items))])
    sos = [a for a in sink.alerts if a.event.kind == "sos"]
    assert [a.event.phase for a in sos] == ["start", "end"] and sos[0].id == sos[1].id
    sent = sent_to(client)
    assert [(m["type"], m.get("phase")) for m in sent if m.get("kind") == "sos"] == [
        ("alert", "start"),
        ("alert", "end"),
    ]


def test_the_same_start_gets_the_same_alert_id_wherever_it_is_processed() -> None:
    """A redelivered batch on another worker names the alert the first one stored."""
    from gpsd_server.model import Event

    start = Event(kind="sos", phase="start", vehicle_id="V1", ts=1000.5, lon=112.3, lat=28.5, key="alarm:sos")
    first, second = AlertLedger(), AlertLedger()
    (a,) = first.rows([start], now=2000.0)
    (b,) = second.rows([start], now=2100.0)
    assert a.id == b.id
    (c,) = first.rows([msgspec.structs.replace(start, ts=1001.5)], now=2000.0)
    assert c.id != a.id
    second.forget(["V1"])
    (end,) = second.rows([msgspec.structs.replace(start, phase="end", ts=1010.0)], now=2200.0)
    assert end.id != a.id  # forgotten: the store's restore hands the open id back, not the ledger


async def test_a_batch_the_rules_fail_on_is_stored_without_rules_and_counted(caplog: object) -> None:
    """A defect of the engine on some batch must not end the server (the
    broker redelivers the batch to every restart): its fixes are stored and
    published, its events are lost, the failure is counted and logged, and
    the next batch is judged again."""
    p, sink, hub, _ = pipeline()
    client = hub.add_client()
    assert client is not None
    engine, calls = p._engine, []  # the test's own pipeline
    real = engine.process

    def failing_once(fixes: list[Fix], now: float) -> object:
        calls.append(len(fixes))
        if len(calls) == 1:
            raise KeyError("a zone the rules did not expect")
        return real(fixes, now)

    engine.process = failing_once  # type: ignore[method-assign]
    lon, lat = test_city.lonlat(300, 0)
    await (await p.handle([Incoming("fleet/MT-001/fix", payload([{"ts": NOW - 20, "lon": lon, "lat": lat}]))]))
    assert [f.ts for f in sink.fixes] == [NOW - 20] and p.engine_errors == 1 and sink.alerts == []
    assert [m["type"] for m in sent_to(client)] == ["position"]
    await (await p.handle([Incoming("fleet/MT-001/fix", payload([{"ts": NOW - 10, "lon": lon, "lat": lat}]))]))
    assert [f.ts for f in sink.fixes] == [NOW - 20, NOW - 10] and p.engine_errors == 1 and calls == [1, 1]
    assert any("rules failed on a batch" in r.getMessage() for r in caplog.records)  # type: ignore[attr-defined]
