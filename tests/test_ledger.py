"""Alert ids: the fast formatting is exactly uuid5 of (vehicle, key, start time)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from gpsd_server.ledger import ALERT_NAMESPACE, alert_id_of
from gpsd_server.model import Event


@given(vehicle=st.text(min_size=1, max_size=40), key=st.text(max_size=60), ts=st.floats(allow_nan=False))
def test_alert_ids_are_uuid5_of_vehicle_key_and_time(vehicle: str, key: str, ts: float) -> None:
    e = Event("sos", "start", vehicle, ts, 112.3, 28.5, key, "critical")
    expected = str(uuid.uuid5(ALERT_NAMESPACE, f"{vehicle}\x1f{key}\x1f{ts!r}"))
    assert alert_id_of(e) == expected
    assert uuid.UUID(expected).version == 5
