"""Reconciling alerts left open in the store with rules rebuilt after a restart."""

from __future__ import annotations

from dataclasses import dataclass

from gpsd_server.core.rules.alarms import ALARM_NAMES, alarm_kind
from gpsd_server.model import Event, Fix, Severity

_KIND_BY_PREFIX: dict[str, tuple[str, Severity]] = {
    "zone": ("zone", "info"),
    "forbidden": ("forbidden_zone", "warning"),
    "route_deviation": ("route_deviation", "warning"),
    "illegal_dumping": ("illegal_dumping", "critical"),
}
_BIT_BY_NAME = {name: bit for bit, name in ALARM_NAMES.items()}


@dataclass(slots=True)
class PendingRestore:
    open_keys: set[str]
    deadline: float | None = None  # fix time by which a key must be raised again


def kind_of_key(key: str) -> tuple[str, Severity]:
    prefix, _, rest = key.partition(":")
    if prefix == "alarm" and rest in _BIT_BY_NAME:
        return alarm_kind(_BIT_BY_NAME[rest])
    return _KIND_BY_PREFIX.get(prefix, (prefix, "warning"))


def reconcile(
    pending: PendingRestore, fix: Fix, events: list[Event], grace_s: float
) -> tuple[list[Event], PendingRestore | None]:
    """Drop starts of already-open keys; after the grace period close the rest."""
    kept: list[Event] = []
    for event in events:
        if event.phase == "start" and event.key in pending.open_keys:
            pending.open_keys.discard(event.key)
            continue
        kept.append(event)
    if pending.deadline is None:
        pending.deadline = fix.ts + grace_s
    if fix.ts < pending.deadline and pending.open_keys:
        return kept, pending
    for key in sorted(pending.open_keys):
        kind, severity = kind_of_key(key)
        kept.append(
            Event(kind, "end", fix.vehicle_id, fix.ts, fix.lon, fix.lat, key, severity, details={"restored": True})
        )
    return kept, None
