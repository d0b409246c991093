"""The alert ledger: which alert each engine event belongs to.

A start opens an alert, its end closes the same id, an instant is an alert
of its own. The id of a start or an instant is derived from what makes the
alert unique in the store (vehicle, key, fix time of the start): the same
fixes processed again -- a redelivery after a crash, on this process or on
the ingest worker that took the vehicle over -- name the same alert, so the
store keeps it once and the desks recognise it. The ledger owns the map of open alerts per (vehicle,
key), which restore fills from the store at start, and counts what was
raised. Pure bookkeeping: the pipeline passes ``now``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence

from gpsd_server.core.places import Places
from gpsd_server.core.rules import presence
from gpsd_server.model import Event
from gpsd_server.store.batch import AlertRow

# Alert ids are UUIDv5 of (vehicle, key, start fix time) in this namespace.
ALERT_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4b7a-9c1e-808a1e7d0001")


_NAMESPACE = ALERT_NAMESPACE.bytes
_VARIANT = "89ab89ab89ab89ab"  # hex digit -> the RFC 4122 variant digit with its low two bits


def alert_id_of(e: Event) -> str:
    """The id of the alert an event starts (the same for the same fix, wherever processed).

    ``str(uuid.uuid5(ALERT_NAMESPACE, name))``, formatted from the SHA-1 digest
    directly: the same text at a third of the cost (an alert per few fixes in
    a dense city; ``tests/test_ledger.py`` checks it equals ``uuid.uuid5``)."""
    x = hashlib.sha1(_NAMESPACE + f"{e.vehicle_id}\x1f{e.key}\x1f{e.ts!r}".encode()).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[int(x[16], 16)]}{x[17:20]}-{x[20:32]}"


class AlertLedger:
    def __init__(self) -> None:
        self._open: dict[tuple[str, str], str] = {}  # (vehicle, key) -> id of the alert whose condition lasts
        self.raised: Counter[str] = Counter()  # by kind, starts and instants
        self.places: Places | None = None  # the city in force names where alerts happen

    @property
    def open_count(self) -> int:
        return len(self._open)

    def rows(self, events: Sequence[Event], now: float) -> list[AlertRow]:
        ids: list[str] = []
        placed: list[int] = []  # the events whose row names a place, described together
        for e in events:
            k = (e.vehicle_id, e.key)
            started = ""
            if e.phase == "start":
                alert_id = self._open[k] = alert_id_of(e)
            elif e.phase == "end":
                alert_id = started = self._open.pop(k, "")
                alert_id = alert_id or alert_id_of(e)
            else:
                alert_id = alert_id_of(e)
            if e.phase != "end":
                self.raised[e.kind] += 1
            # The place is the start's (an end whose start was never seen stands for the whole alert).
            if e.kind != presence.KIND and not started:
                placed.append(len(ids))
            ids.append(alert_id)
        places: list[str | None] = [None] * len(ids)
        if placed and self.places is not None:
            described = self.places.describe_many([events[i].lon for i in placed], [events[i].lat for i in placed])
            for i, place in zip(placed, described, strict=True):
                places[i] = place
        return [AlertRow(i, e, now, p) for i, e, p in zip(ids, events, places, strict=True)]

    def forget(self, vehicle_ids: Iterable[str]) -> None:
        """Vehicles another ingest worker now owns (their open alerts are its)."""
        gone = set(vehicle_ids)
        for k in [k for k in self._open if k[0] in gone]:
            del self._open[k]

    def restore(self, open_alerts: Iterable[tuple[str, str, str]]) -> None:
        """(vehicle, key, id) of the alerts still open in the store."""
        for vehicle_id, key, alert_id in open_alerts:
            self._open[(vehicle_id, key)] = alert_id
