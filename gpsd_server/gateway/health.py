"""Who each terminal is and how it is doing, for the operator.

:class:`TerminalRegistry` maps phones to vehicles (the ``terminal`` field of
the city's vehicles, in :func:`normalize_phone` form). :class:`TerminalHealth`
keeps one :class:`TerminalRecord` per phone seen: last connect, last valid
frame, protocol state (``connected``, ``registered``, ``authenticated``,
``auth_failed``, ``unknown_terminal``, ``deregistered``; ``emqx`` for
terminals seen only through EMQX's uplinks), edition, what it registered
with, and what was dropped or tolerated by reason. The command driver
writes changed records to the ``terminal_health`` table every few seconds;
``GET /api/terminals`` reads them.

Memory stays bounded: phones that are not in the registry (a stranger can
make up any number) keep at most ``MAX_STRANGERS`` records, the oldest
disconnected one going first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpsd_server.core.city import City
from gpsd_server.core.decode.jt808 import AUTO_REGISTER_PREFIX, normalize_phone, terminal_registry, valid_phone
from gpsd_server.core.jt808.session import Jt808Session, Outcome

MAX_STRANGERS = 2000
TCP_GRACE_S = 30.0  # after a TCP terminal leaves, its last uplinks may still come back from the broker


class TerminalRegistry:
    """Phone <-> vehicle, from the city in force."""

    def __init__(self, *, auto_register: bool = False) -> None:
        self.auto_register = auto_register
        self._vehicle_by_phone: dict[str, str] = {}
        self._phone_by_vehicle: dict[str, str] = {}

    def use_city(self, city: City) -> None:
        self.use((v.terminal, v.id) for v in (city.vehicles or {}).values() if v.terminal)

    def use(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._vehicle_by_phone = terminal_registry(pairs)
        self._phone_by_vehicle = {vehicle: phone for phone, vehicle in self._vehicle_by_phone.items()}

    @property
    def vehicles(self) -> Mapping[str, str]:
        """Vehicle id -> normalised phone, for every vehicle with a terminal."""
        return self._phone_by_vehicle

    def vehicle_of(self, phone: str) -> str | None:
        key = normalize_phone(phone)
        vehicle = self._vehicle_by_phone.get(key)
        if vehicle is None and self.auto_register and valid_phone(phone):
            return AUTO_REGISTER_PREFIX + key
        return vehicle

    def phone_of(self, vehicle_id: str) -> str | None:
        phone = self._phone_by_vehicle.get(vehicle_id)
        if phone is None and self.auto_register and vehicle_id.startswith(AUTO_REGISTER_PREFIX):
            candidate = vehicle_id[len(AUTO_REGISTER_PREFIX) :]
            return candidate if candidate and valid_phone(candidate) else None
        return phone

    def known(self, phone: str) -> bool:
        """Whether a terminal may register. With no terminal in the registry
        at all (no city loaded yet, or a city file in error) nobody is turned
        away: a terminal told "no such terminal" may give up until it is power
        cycled, and its positions are refused by the decoder anyway."""
        return not self._vehicle_by_phone or self.vehicle_of(phone) is not None


@dataclass
class TerminalRecord:
    phone: str  # normalised
    header_phone: str = ""  # as the terminal writes it (EMQX form)
    vehicle_id: str | None = None
    transport: str = "tcp"  # tcp (our gateway) | mqtt (seen through EMQX)
    mqtt_clientid: str = ""
    peer: str = ""
    connected: bool = False
    state: str = "connected"
    close_reason: str = ""
    edition: int | None = None
    proto_ver: int | None = None
    plate: str = ""
    model: str = ""
    imei: str = ""
    software_version: str = ""
    first_seen: float | None = None
    last_connect: float | None = None
    last_disconnect: float | None = None
    last_frame: float | None = None
    last_drop: str = ""
    last_drop_at: float | None = None
    connections: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    tolerated: Counter[str] = field(default_factory=Counter)
    dirty: bool = True

    def row(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "dirty"}
        out["drops"], out["tolerated"] = dict(self.drops), dict(self.tolerated)
        return out


class TerminalHealth:
    def __init__(self, registry: TerminalRegistry) -> None:
        self.registry = registry
        self.records: dict[str, TerminalRecord] = {}

    def record(self, header_phone: str, now: float) -> TerminalRecord:
        key = normalize_phone(header_phone)
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = TerminalRecord(key, header_phone, first_seen=now)
            self._bound()
        rec.header_phone, rec.vehicle_id = header_phone, self.registry.vehicle_of(header_phone)
        return rec

    def attach(self, session: Jt808Session, peer: str, now: float) -> TerminalRecord | None:
        """A session has bound its phone: a (re)connection of that terminal."""
        if session.phone is None:
            return None
        rec = self.record(session.phone, now)
        rec.transport, rec.peer, rec.connected, rec.close_reason = "tcp", peer, True, ""
        rec.last_connect = session.connected_at
        rec.connections += 1
        rec.dirty = True
        return rec

    def update(self, rec: TerminalRecord, session: Jt808Session, outcomes: Iterable[Outcome], now: float) -> None:
        rec.state, rec.edition, rec.proto_ver = session.state, session.edition, session.proto_ver
        rec.last_frame = session.last_valid_at
        if session.register is not None:
            rec.plate, rec.model = session.register.plate_text, session.register.model_text
        if session.auth is not None and session.auth.imei:
            rec.imei, rec.software_version = session.auth.imei, session.auth.software_version
        for outcome in outcomes:
            if outcome.dropped:
                rec.drops[outcome.reason] += 1
                rec.last_drop, rec.last_drop_at = outcome.reason, now
            for quirk in outcome.tolerated:
                rec.tolerated[quirk] += 1
        rec.dirty = True

    def detach(self, rec: TerminalRecord, reason: str, now: float) -> None:
        rec.connected, rec.close_reason, rec.last_disconnect = False, reason, now
        rec.dirty = True

    def seen_via_mqtt(self, clientid: str, header_phone: str, now: float) -> TerminalRecord | None:
        """An uplink on ``jt808/{clientid}/{phone}/up`` from a terminal that is
        not on our TCP gateway (EMQX's, or another gateway's)."""
        if not valid_phone(header_phone):
            return None
        key = normalize_phone(header_phone)
        rec = self.records.get(key)
        if rec is not None and rec.transport == "tcp":
            recent = rec.last_disconnect is not None and now - rec.last_disconnect < TCP_GRACE_S
            if rec.connected or recent:
                return None  # our own gateway's publication of a TCP terminal (maybe still in flight)
        rec = self.record(header_phone, now)
        if rec.transport != "mqtt" or rec.state != "emqx":
            rec.transport, rec.state, rec.last_connect = "mqtt", "emqx", now
            rec.dirty = True
        rec.mqtt_clientid, rec.connected = clientid, True
        if rec.last_frame is None or now - rec.last_frame >= 1.0:  # at most one write a second
            rec.dirty = True
        rec.last_frame = now
        return rec

    def changed(self) -> list[TerminalRecord]:
        return [r for r in self.records.values() if r.dirty]

    def restore(self, rows: Iterable[dict[str, Any]]) -> None:
        """Records from the database at start: counters continue, nothing is
        connected (a terminal that connected meanwhile keeps its live record,
        with the stored counters added)."""
        for row in rows:
            values = {k: v for k, v in row.items() if k in TerminalRecord.__dataclass_fields__}
            rec = TerminalRecord(**values)
            rec.drops, rec.tolerated = Counter(row.get("drops") or {}), Counter(row.get("tolerated") or {})
            rec.connected, rec.dirty = False, False
            live = self.records.get(rec.phone)
            if live is None:
                self.records[rec.phone] = rec
                continue
            live.drops.update(rec.drops)
            live.tolerated.update(rec.tolerated)
            live.connections += rec.connections
            live.first_seen = rec.first_seen or live.first_seen
            live.dirty = True

    def _bound(self) -> None:
        strangers = [r for r in self.records.values() if r.vehicle_id is None]
        if len(strangers) <= MAX_STRANGERS:
            return
        gone = min((r for r in strangers if not r.connected), key=lambda r: r.last_frame or 0.0, default=None)
        if gone is not None:
            del self.records[gone.phone]
