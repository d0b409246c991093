"""The alert ledger: which alert each engine event belongs to.

A start opens an alert (a new id), its end closes the same id, an instant is
an alert of its own. The ledger owns the map of open alerts per (vehicle,
key), which restore fills from the store at start, and counts what was
raised. Pure bookkeeping: the pipeline passes ``now``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence

from gpsd_server.core.places import Places
from gpsd_server.core.rules import presence
from gpsd_server.model import Event
from gpsd_server.store.batch import AlertRow


class AlertLedger:
    def __init__(self) -> None:
        self._open: dict[tuple[str, str], str] = {}  # (vehicle, key) -> id of the alert whose condition lasts
        self.raised: Counter[str] = Counter()  # by kind, starts and instants
        self.places: Places | None = None  # the city in force names where alerts happen

    @property
    def open_count(self) -> int:
        return len(self._open)

    def rows(self, events: Sequence[Event], now: float) -> list[AlertRow]:
        rows = []
        for e in events:
            k = (e.vehicle_id, e.key)
            started = ""
            if e.phase == "start":
                alert_id = self._open[k] = str(uuid.uuid4())
            elif e.phase == "end":
                alert_id = started = self._open.pop(k, "")
                alert_id = alert_id or str(uuid.uuid4())
            else:
                alert_id = str(uuid.uuid4())
            if e.phase != "end":
                self.raised[e.kind] += 1
            # The place is the start's (an end whose start was never seen stands for the whole alert).
            place = None
            if e.kind != presence.KIND and self.places is not None and not started:
                place = self.places.describe(e.lon, e.lat)
            rows.append(AlertRow(alert_id, e, now, place))
        return rows

    def restore(self, open_alerts: Iterable[tuple[str, str, str]]) -> None:
        """(vehicle, key, id) of the alerts still open in the store."""
        for vehicle_id, key, alert_id in open_alerts:
            self._open[(vehicle_id, key)] = alert_id
