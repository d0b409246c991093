"""What the API needs from the rest of the server, as narrow interfaces.

Routes get one :class:`ApiServices` and reach the server only through it:
the settings sections they read, the database pool, the token store, the
vehicle directory, the city in force, the live feed, "who is inside zone Z
now" and the server's own status. Nothing here imports the wiring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.registry import CollectorRegistry

from gpsd_server import wire
from gpsd_server.cityfolder import CityData, CityFolder
from gpsd_server.core.history_city import CityShapes
from gpsd_server.directory import VehicleDirectory
from gpsd_server.settings import Config
from gpsd_server.sinks.hub import Client, LivePosition
from gpsd_server.store.db import Database

if TYPE_CHECKING:
    from gpsd_server.api.auth import TokenStore
    from gpsd_server.core.cases import CaseBook, Proposal
    from gpsd_server.store.cases import CaseRecord, EventRecord


class CityView(Protocol):
    """The city in force, and changing it (admin)."""

    folder: CityFolder

    @property
    def current(self) -> CityData: ...
    @property
    def error(self) -> str | None: ...
    def shapes(self) -> CityShapes: ...
    async def load(self) -> CityData: ...
    async def replace(self, name: str, data: bytes | None) -> CityData: ...
    async def swapped(self, data: CityData) -> None: ...


class LiveFeed(Protocol):
    """The hub, as the websocket endpoint and dispatch see it."""

    @property
    def positions(self) -> Mapping[str, LivePosition]: ...
    def add_client(self) -> Client | None: ...
    def remove_client(self, client: Client) -> None: ...
    def snapshot(self, client: Client, limit: int) -> bytes: ...
    def reply(self, client: Client, data: bytes) -> None: ...
    def publish_alerts(self, alerts: Iterable[wire.Alert]) -> None: ...


class Presence(Protocol):
    def vehicles_in_zone(self, zone_id: str) -> frozenset[str]: ...


class CaseService(Protocol):
    """12319 cases (gpsd_server/cases.py: CaseDesk), as the API sees them."""

    @property
    def book(self) -> CaseBook: ...
    def clock(self) -> float: ...
    def view(self, r: CaseRecord, now: float, event: EventRecord | None = None) -> wire.Case: ...
    def event_view(self, e: EventRecord) -> wire.CaseEvent: ...
    def propose(self, lon: float, lat: float, *, limit: int, now: float, paths: int = 3) -> list[Proposal]: ...
    async def report(self, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]: ...
    async def create(
        self, *, channel: str, category: str, priority: str, description: str, address: str, reporter: str,
        lon: float, lat: float, by: str,
    ) -> wire.Case: ...  # fmt: skip
    async def act(
        self, case_id: int, action: str, *, by: str, comment: str = "", vehicle_id: str | None = None,
        phone: str | None = None,
    ) -> wire.Case: ...  # fmt: skip


class ServerStatus(Protocol):
    @property
    def mqtt_connected(self) -> bool: ...
    @property
    def timescaledb(self) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
    def metrics(self) -> CollectorRegistry: ...


@dataclass(frozen=True)
class ApiServices:
    config: Config
    db: Database
    tokens: TokenStore
    directory: VehicleDirectory
    city: CityView
    live: LiveFeed
    presence: Presence
    status: ServerStatus
    cases: CaseService | None = None  # 12319 cases; their routes are mounted when there is one
