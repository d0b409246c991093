"""The names and shape of the scale-out topology on RabbitMQ 3.10.

    terminals --MQTT 3.1.1 QoS 1--> amq.topic            (MQTT plugin; "/" becomes ".")
    amq.topic --bindings of the subscribed topics--> {exchange} (x-consistent-hash on the routing key)
    {exchange} --ring weight--> {queue_prefix}00 .. P-1  (quorum queues, single active consumer)
    workers --> {hub_exchange} (topic): "hub" frames of confirmed positions and alerts
    API nodes --> {hub_exchange}: "desk" frames of alert updates; each node reads "#"

One MQTT topic is one terminal, so hashing the routing key hashes the vehicle
and all its fixes land in one partition, in publish order.
"""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel

from gpsd_server.settings import ClusterSettings

HUB_KEY = "hub"  # worker -> API nodes: positions and alerts
DESK_KEY = "desk"  # API node -> API nodes: alert updates (acknowledged, closed)


def queue_name(settings: ClusterSettings, partition: int) -> str:
    return f"{settings.queue_prefix}{partition:02d}"


def routing_keys(subscriptions: Sequence[str]) -> list[str]:
    """MQTT subscriptions as AMQP topic bindings: "fleet/+/fix" -> "fleet.*.fix"."""
    return [s.replace("/", ".").replace("+", "*") for s in subscriptions]


def topic_of(routing_key: str) -> str:
    """The MQTT topic a terminal published on ("fleet.V1.fix" -> "fleet/V1/fix")."""
    return routing_key.replace(".", "/")


async def declare(channel: AbstractChannel, settings: ClusterSettings, subscriptions: Sequence[str]) -> None:
    """Declare exchanges, partition queues and bindings (idempotent)."""
    ingest = await channel.declare_exchange(settings.exchange, "x-consistent-hash", durable=True)
    topic = await channel.get_exchange("amq.topic")
    for key in routing_keys(subscriptions):
        await ingest.bind(topic, routing_key=key)
    for p in range(settings.partitions):
        queue = await channel.declare_queue(
            queue_name(settings, p),
            durable=True,
            arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
        )
        await queue.bind(ingest, routing_key=str(settings.ring_weight))
    await channel.declare_exchange(settings.hub_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
