"""The exception hierarchy of gpsd-server.

::

    GpsdError                  base of everything raised on purpose
    ├── ConfigError            a bad config file, key or value (names file and key)
    ├── DataError              a bad geofence, vehicle or permit file (names file and item)
    ├── DecodeError            a bad payload; carries a stable ``reason`` code
    ├── SpoolError             the track writer's disk spool cannot be used (locked, unreadable, full)
    ├── StartupError           the server cannot start as configured (the message says why)
    └── ClusterError           a scale-out worker lost its engine or lease session (it exits; its partitions move)

``DecodeError`` is also a *value*: the pure decoders return it inside their
result lists instead of raising, so one bad item in a batch never loses the
good ones. Its ``reason`` is one of the codes documented in the README and is
what the rejection counters and the dead-letter topic carry; ``detail`` is a
short human explanation that never contains internal state.
"""

from __future__ import annotations


class GpsdError(Exception):
    """Base class for errors raised on purpose by gpsd-server."""


class ConfigError(GpsdError):
    """A configuration file, key or value is invalid."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        super().__init__(f"{file}: {key}: {reason}")


class DataError(GpsdError):
    """A geofence, vehicle or permit file is invalid."""

    def __init__(self, file: str, item: str, reason: str) -> None:
        self.file = file
        self.item = item
        self.reason = reason
        super().__init__(f"{file}: {item}: {reason}")


class DecodeError(GpsdError):
    """A payload (or one item of a batch) was rejected."""

    __slots__ = ("detail", "index", "reason")

    def __init__(self, reason: str, detail: str = "", index: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.index = index
        super().__init__(f"{reason}: {detail}" if detail else reason)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DecodeError) and (self.reason, self.detail, self.index) == (
            other.reason,
            other.detail,
            other.index,
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.detail, self.index))


class SpoolError(GpsdError):
    """The disk spool cannot be opened, written or is full."""


class ClusterError(GpsdError):
    """An ingest worker lost its broker connection or lease session: it stops,
    and what it did not acknowledge goes to the next owner of its partitions."""


class StartupError(GpsdError):
    """The server cannot start as configured (the message says why)."""
