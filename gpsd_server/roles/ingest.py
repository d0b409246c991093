"""The ingest role: fixes in from a source, the pipeline over the engine, the
track writer, the terminals; live data out to a :class:`LiveSink`.

One role, two sources: the MQTT subscription (``gpsd-server run``, the whole
fleet in one process) or a worker's partitions on RabbitMQ (``gpsd-server
ingest``, ``[cluster] engine = "rabbitmq"``). On a worker the live sink is
the broker's hub feed, a vehicle is restored when first seen and forgotten
when its partition goes, and a batch is acknowledged after it is durable
*and* its hub frame is confirmed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from gpsd_server.bringup import WriterSwitch
from gpsd_server.cityfolder import CityData
from gpsd_server.cluster.feed import BrokerHub
from gpsd_server.cluster.source import Delivery, RabbitPartitionSource
from gpsd_server.cluster.takeover import FirstSight
from gpsd_server.config import spool_path
from gpsd_server.core.decode import Decoder, TopicRouter
from gpsd_server.core.engine import Engine
from gpsd_server.directory import VehicleDirectory
from gpsd_server.ingest import MqttIngest
from gpsd_server.ledger import AlertLedger
from gpsd_server.pipeline import Pipeline, Received
from gpsd_server.settings import Config
from gpsd_server.sinks.hub import LiveSink
from gpsd_server.status import Intake
from gpsd_server.store.batch import MileageRule
from gpsd_server.store.db import Database
from gpsd_server.terminals import Terminals


class IngestRole:
    def __init__(
        self, cfg: Config, *, db: Database, directory: VehicleDirectory, hub: LiveSink,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        c = cfg
        self.cfg = cfg
        self.engine = Engine(settings=c.rules, filter_settings=c.filters, tz=c.city.timezone)
        self.ledger = AlertLedger()
        partitioned = isinstance(hub, BrokerHub)
        self.writer = WriterSwitch(
            c.database, spool_path=spool_path(c), timezone=c.city.timezone,
            mileage=MileageRule(c.rules.moving_kmh, c.history.gap_s), spool=not partitioned,
        )  # fmt: skip
        router = TopicRouter(
            native=c.mqtt.topic_prefix.rstrip("/"),
            jt808=c.jt808.topic_prefix,
            owntracks=c.owntracks.topic_prefix if c.owntracks.enabled else None,
        )
        self.decoder = Decoder(
            router, c.ingest, jt808_auto_register=c.jt808.auto_register,
            owntracks_max_accuracy_m=c.owntracks.max_accuracy_m,
        )  # fmt: skip
        self.pipeline = Pipeline(
            decoder=self.decoder, engine=self.engine, ledger=self.ledger, directory=directory,
            writer=self.writer, hub=hub, dead_letter_topic=c.mqtt.dead_letter_topic,
            reject_log_interval_s=c.ingest.reject_log_interval_s, clock=clock,
        )  # fmt: skip
        self.intake = Intake()
        self.intake_open = asyncio.Event()  # the start-up lets fixes in
        self.hub = hub
        self.source: MqttIngest | RabbitPartitionSource
        if partitioned:
            takeover = FirstSight(db=db, engine=self.engine, ledger=self.ledger, directory=directory)
            self.pipeline.takeover = takeover
            self.source = RabbitPartitionSource(
                c.cluster, c.ingest, session=self.writer.on_session, subscriptions=router.subscriptions(),
                handler=self._handle_partitions, on_revoke=takeover.revoke, name=c.mqtt.client_id,
            )  # fmt: skip
        else:
            self.source = MqttIngest(
                settings=c.mqtt, cycle=c.ingest, topics=router.subscriptions(), handler=self._handle
            )
            self.pipeline.dead_letter = self.source.dead_letters
        self.terminals = Terminals(c.jt808, db=db, publish=self._gateway_publish)

    def use_city(self, data: CityData) -> None:
        self.engine.reload(data.city, data.geometry)
        self.decoder.use_city(data.city)
        self.ledger.places = data.places
        self.terminals.use_city(data)

    async def _handle(self, batch: Sequence[Received]) -> Awaitable[None]:
        """The source's handler: the pipeline, once the start-up lets fixes in."""
        self.intake.received()
        self.terminals.commands.observe(batch)  # terminals seen through EMQX, answers to commands
        if not self.intake_open.is_set():
            await self.intake_open.wait()
        return await self.pipeline.handle(batch)

    async def _handle_partitions(self, batch: Sequence[Delivery]) -> Awaitable[None]:
        assert isinstance(self.hub, BrokerHub)
        hub = self.hub
        durable = await self._handle(batch)
        frame = hub.take()

        async def confirmed() -> None:
            await durable
            await hub.send(frame)

        return confirmed()

    async def _gateway_publish(self, topic: str, payload: bytes) -> None:
        if not isinstance(self.source, MqttIngest):
            raise ConnectionError("the JT/T 808 gateway publishes over MQTT ([cluster] engine = none)")
        await self.source.publish(topic, payload, qos=1)

    async def _tick(self) -> None:
        """Time-driven rules (offline) once a second."""
        while True:
            await asyncio.sleep(1.0)
            if self.intake_open.is_set():
                await self.pipeline.tick()

    def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The role's tasks (the track writer is started by the start-up)."""
        source = self._partitioned() if isinstance(self.hub, BrokerHub) else self.source.run()
        return [
            tg.create_task(source, name="ingest-source"),
            tg.create_task(self._tick(), name="rule-tick"),
            *self.terminals.start(tg),
        ]

    async def _partitioned(self) -> None:
        """The partitions and the hub feed; on shutdown the feed outlives the
        source, whose last batches (partitions given back) still need it."""
        assert isinstance(self.hub, BrokerHub)
        async with asyncio.TaskGroup() as tg:
            feed = tg.create_task(self.hub.run(), name="hub-feed")
            try:
                await self.source.run()
            finally:
                feed.cancel()
