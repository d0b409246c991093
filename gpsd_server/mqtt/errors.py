"""Exceptions of the MQTT driver (the hierarchy is in the package docstring)."""

from __future__ import annotations


class MqttError(Exception):
    """Base of every error the MQTT driver raises on purpose."""


class MalformedPacket(MqttError):
    """Bytes that are not a valid MQTT packet (raised by the codec; the client
    turns it into a :class:`ProtocolViolation` and drops the connection)."""


class NotConnected(MqttError):
    """The operation needs a connection and there is none (never connected,
    closed, or lost)."""


class ConnectRefused(MqttError):
    """The broker answered CONNECT with a failure reason code."""

    def __init__(self, reason_code: int, reason: str, detail: str = "") -> None:
        self.reason_code = reason_code
        self.reason = reason
        self.detail = detail
        text = f"connection refused: 0x{reason_code:02X} {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class ConnectionLost(MqttError):
    """An established connection ended: the socket closed, a keepalive
    PINGRESP did not come, or the client was closed."""


class DisconnectedByBroker(ConnectionLost):
    """The broker sent DISCONNECT (MQTT 5) before closing, with a reason."""

    def __init__(self, reason_code: int, reason: str, detail: str = "") -> None:
        self.reason_code = reason_code
        self.reason = reason
        self.detail = detail
        text = f"disconnected by broker: 0x{reason_code:02X} {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class ProtocolViolation(ConnectionLost):
    """The broker sent something MQTT forbids (a malformed packet, a packet too
    large, QoS 2, an unexpected packet type); the client closed the connection."""


class MqttTimeout(MqttError):
    """CONNECT, SUBSCRIBE or a QoS 1 PUBLISH was not answered in time."""


class SubscribeRefused(MqttError):
    """The broker refused one or more topic filters of a SUBSCRIBE."""

    def __init__(self, refused: dict[str, int]) -> None:
        self.refused = refused
        super().__init__("subscription refused: " + ", ".join(f"{t!r}: 0x{c:02X}" for t, c in refused.items()))


class PublishRefused(MqttError):
    """The broker answered a QoS 1 PUBLISH with a failure reason code (MQTT 5)."""

    def __init__(self, reason_code: int, reason: str) -> None:
        self.reason_code = reason_code
        self.reason = reason
        super().__init__(f"publish refused: 0x{reason_code:02X} {reason}")
