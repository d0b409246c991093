"""Commands through EMQX's downlink topic: the server's own TCP gateway is off,
terminals reach it through another gateway on the broker (EMQX in
production; here our standalone gateway, which speaks EMQX's topics and
JSON both ways), over the real Mosquitto.

The server learns from the uplinks on ``jt808/{clientid}/{phone}/up`` that
the terminal is reachable, publishes the command as EMQX downlink JSON on
``.../dn``, and matches the published answer to a position query (0x0201).
EMQX does not publish a terminal's 0x0001, so a text message sent this way
ends as ``sent``, without a timeout."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import psycopg
import pytest

from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.gateway.tcp import Downlinks, Jt808Gateway, MqttPublisher
from gpsd_server.settings import Jt808Settings
from tests.fixtures.server import RunningServer
from tests.fixtures.services import MQTT_PORT, REPO
from tests.helpers import wait_for
from tools.jt808_terminal import SimulatedTerminal, location

CAR, PHONE = "PC-004", "013100000021"  # a phone no other test uses (the session shares one database)


@pytest.fixture
def topic_prefix(unique: str) -> str:
    return f"t{unique}-808"


@pytest.fixture
def server_overrides(topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    registry = json.loads((folder / "vehicles.json").read_text(encoding="utf-8"))
    for v in registry["vehicles"] if isinstance(registry, dict) and "vehicles" in registry else registry:
        if v["id"] == CAR:
            v["terminal"] = PHONE
    (folder / "vehicles.json").write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    return {
        "GPSD_GEOFENCES__DIR": str(folder),
        "GPSD_JT808__ENABLED": "false",
        "GPSD_JT808__DOWNLINK_MQTT": "true",
        "GPSD_JT808__TOPIC_PREFIX": topic_prefix,
        "GPSD_JT808__COMMAND_POLL_S": "0.1",
        "GPSD_JT808__HEALTH_FLUSH_S": "0.1",
        "GPSD_JT808__COMMAND_ACK_TIMEOUT_S": "1",
    }


@pytest.fixture
async def other_gateway(topic_prefix: str, unique: str) -> AsyncIterator[Jt808Gateway]:
    """A gateway of its own on the broker, as EMQX's would be."""
    publisher = MqttPublisher(
        "127.0.0.1", MQTT_PORT, client_id=f"{unique}-emqx", downlink_topic=f"{topic_prefix}/+/+/dn"
    )
    gw = Jt808Gateway(publisher.publish, Jt808Settings(auth_code="", topic_prefix=topic_prefix))
    publisher.downlink = Downlinks(gw)
    runner = asyncio.create_task(publisher.run())
    await gw.start("127.0.0.1", 0)
    async with asyncio.timeout(10):
        await publisher.connected.wait()
    yield gw
    await gw.close()
    runner.cancel()


async def status(http: httpx.AsyncClient, command_id: int, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        found: dict[str, Any] = (await http.get(f"/api/commands/{command_id}")).json()
        if found["status"] == wanted:
            return found
        assert time.monotonic() < deadline, f"command {command_id} is {found['status']}, not {wanted}"
        await asyncio.sleep(0.05)


async def test_commands_go_through_the_emqx_downlink_topic(
    server: RunningServer, other_gateway: Jt808Gateway, topic_prefix: str, unique: str,
    db: psycopg.Connection[tuple[object, ...]],
) -> None:  # fmt: skip
    assert server.server.gateway is None
    now = time.time()
    async with SimulatedTerminal(PHONE) as car:
        await car.connect("127.0.0.1", other_gateway.port)
        await car.authenticate("any")
        await car.report(location(now - 3, 112.35, 28.57))
        await through_emqx(server, car, topic_prefix, unique, db, now)


async def through_emqx(
    server: RunningServer, car: SimulatedTerminal, topic_prefix: str, unique: str,
    db: psycopg.Connection[tuple[object, ...]], now: float,
) -> None:  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http,
        aiomqtt.Client("127.0.0.1", MQTT_PORT, identifier=f"{unique}-watch") as watch,
    ):
        await watch.subscribe(f"{topic_prefix}/+/+/dn", qos=1)

        async def seen() -> dict[str, Any]:
            rows = (await http.get("/api/terminals", params={"vehicle_id": CAR})).json()["terminals"]
            return rows[0] if rows else {}

        deadline = time.monotonic() + 15
        while (row := await seen()).get("status") != "online":
            assert time.monotonic() < deadline, row
            await asyncio.sleep(0.05)
        assert (row["transport"], row["state"]) == ("mqtt", "emqx")

        query = (await http.post(f"/api/terminals/{CAR}/commands", json={"kind": "position_query"})).json()
        async with asyncio.timeout(10):
            message = await anext(aiter(watch.messages))
        assert str(message.topic) == f"{topic_prefix}/{PHONE}/{PHONE}/dn"  # EMQX's clientid/phone, as seen
        assert isinstance(message.payload, bytes)
        assert json.loads(message.payload) == {"header": {"msg_id": dl.POSITION_QUERY, "msg_sn": query["id"] & 0xFFFF}}
        header, _ = await car.next_command(timeout_s=10)
        assert header.msg_sn == query["id"] & 0xFFFF  # the sequence number the downlink named
        await car.acknowledge(header, position=location(now - 1, 112.3502, 28.5701))
        done = await status(http, query["id"], "acknowledged")
        assert (done["transport"], done["result"]) == ("mqtt", 0)
        await wait_for(
            lambda: db.execute(
                "SELECT count(*) FROM fixes WHERE vehicle_id = %s AND ts = to_timestamp(%s)", (CAR, int(now - 1))
            ).fetchone() == (1,),
            what="the answered position stored",
        )  # fmt: skip

        text = (await http.post(f"/api/terminals/{CAR}/commands", json={"kind": "text", "text": "回队"})).json()
        header, command = await car.next_command(timeout_s=10)
        assert command == dl.TextMessage("回队")
        await car.acknowledge(header)  # EMQX keeps the 0x0001 to itself
        await status(http, text["id"], "sent")
        await asyncio.sleep(1.5)  # past the 1 s answer timeout: not resent, not timed out
        assert (await http.get(f"/api/commands/{text['id']}")).json()["status"] == "sent"
        assert car.received_commands() == []
