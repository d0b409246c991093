"""A thin asyncio MQTT client for gpsd-server's ingest: MQTT 5 and 3.1.1,
one persistent session, batched receive, manual in-order acknowledgement.

It replaces aiomqtt/paho in the ingest path without touching any other
package's private names. It imports nothing from the rest of gpsd_server, so
it can move with the package layout.

Layers::

    codec.py    sans-I/O: our own PUBLISH fast path and PUBACK batches (both
                versions), mqtt5 for every other MQTT 5 packet, our own small
                MQTT 3.1.1 codec (see its docstring for the measurements)
    client.py   MqttClient: an asyncio.Protocol over that codec
    errors.py   the exceptions

Exceptions::

    MqttError                     base of everything raised on purpose
    ├── MalformedPacket           the codec met bytes that are no valid packet
    ├── NotConnected              the operation needs a connection (publish, subscribe)
    ├── ConnectRefused            CONNACK with a failure: .reason_code, .reason (e.g. 0x85 CLIENT_ID_NOT_VALID)
    ├── ConnectionLost            an established connection ended (socket closed, no PINGRESP, close())
    │   ├── DisconnectedByBroker  MQTT 5 DISCONNECT from the broker: .reason_code, .reason
    │   │                         (0x8E SESSION_TAKEN_OVER, 0x8B SERVER_SHUTTING_DOWN, ...)
    │   └── ProtocolViolation     the broker broke the protocol; the client closed the connection
    ├── MqttTimeout               no CONNACK, SUBACK or PUBACK in time
    ├── SubscribeRefused          SUBACK refused filters: .refused {filter: reason code}
    └── PublishRefused            PUBACK with a failure reason code (MQTT 5)

Also raised when connect() cannot reach the broker at all: ConnectionLost
(TCP refused, unreachable, TLS handshake failure).

Model
-----

* Session: fixed ``client_id``, ``clean_start`` off and (MQTT 5)
  ``session_expiry_s``, so the broker queues QoS 1 messages while we are away.
* Receiving: ``async for batch in client.batches(): ...; client.ack(batch)``.
  Each batch is everything already received, bounded by ``max_messages`` and
  ``max_bytes``. ``ack`` sends the PUBACKs of a batch's QoS 1 messages in
  order, in one write; acknowledge only what is durable, and in the order
  received (MQTT requires it).
* Flow control: the client counts unacknowledged QoS 1 messages itself. When
  the count reaches ``receive_maximum`` (also announced in the MQTT 5 CONNECT),
  or when ``max_buffered_bytes`` of payload wait for ``batches``, it pauses
  reading the transport; acknowledgements and ``batches`` resume it. A broker
  that sends past the receive maximum (Mosquitto 2.0.11 was seen to) loses
  nothing and is not disconnected: ``stats.over_receive_maximum`` counts it.
  Memory is thus bounded by ``max_buffered_bytes`` plus one read (256 KiB) plus
  one packet (``max_packet_bytes``), and by ``receive_maximum`` messages held
  unacknowledged by the caller.
* Keepalive: a PINGREQ when nothing was written for half the keepalive or
  nothing read for a whole one; no PINGRESP within the keepalive ends the
  connection (``batches`` raises :class:`ConnectionLost`). The broker's
  ``server_keep_alive`` (MQTT 5 CONNACK) takes precedence.
* No reconnect loop: the caller (the ingest driver) owns reconnects and
  backoff. After an :class:`MqttError` from ``batches``, call ``connect()``
  again on the same client (stats carry on) or make a new ``MqttClient`` with
  the same ``client_id``; ``connect()`` returns ``session_present`` True when
  the broker kept the session, which then still holds the subscriptions, and
  the broker redelivers every QoS 1 message that was not acknowledged. Drop the
  messages of the old connection that were not acknowledged: they come again
  (``ack`` without a connection only counts them in ``stats.acks_dropped``).

Measured with ``tools/bench_mqtt.py`` (100,000 queued QoS 1 messages of ~150
bytes drained from a persistent session, Mosquitto 2.0.11 on the same
2-core machine shared with other work, 11 drains over 5 runs): 2.3-3.5 µs
of client CPU a message received and acknowledged in batches (median ~2.7),
against 53-62 µs for bare paho with ``manual_ack``; 36,000-133,000 msg/s
against 10,700-16,200; broker CPU 6.7-9.9 µs a message against 7.6-14.0.
The PUBLISH fast path alone is ~1.2 µs a message without the garbage
collector and ~1.9 µs with it (100,000 messages kept alive), where
``mqtt5.read`` alone takes ~1.1 µs before its result is turned into a
``Message``: PUBLISH is decoded by our own code, mqtt5 serves the rest.
"""

from gpsd_server.mqtt.client import MqttClient, Stats
from gpsd_server.mqtt.codec import Message
from gpsd_server.mqtt.errors import (
    ConnectionLost,
    ConnectRefused,
    DisconnectedByBroker,
    MalformedPacket,
    MqttError,
    MqttTimeout,
    NotConnected,
    ProtocolViolation,
    PublishRefused,
    SubscribeRefused,
)

__all__ = [
    "ConnectRefused",
    "ConnectionLost",
    "DisconnectedByBroker",
    "MalformedPacket",
    "Message",
    "MqttClient",
    "MqttError",
    "MqttTimeout",
    "NotConnected",
    "ProtocolViolation",
    "PublishRefused",
    "Stats",
    "SubscribeRefused",
]
