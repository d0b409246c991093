"""The vehicle directory: who a vehicle id is (plate, class, company) and what
a zone or route id is called. Owned here, filled from the loaded city's
registry and from the database at start (vehicles seen before that are no
longer in the registry); everything else reads it through :meth:`info` and
:meth:`place_name`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gpsd_server.core.city import City


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    id: str
    vehicle_class: str = "other"
    plate: str | None = None
    company: str | None = None


class VehicleDirectory:
    def __init__(self) -> None:
        self._vehicles: dict[str, VehicleInfo] = {}
        self._places: dict[str, str] = {}
        self._fleets: dict[str, frozenset[str]] | None = None  # company -> its vehicle ids, built on demand

    def info(self, vehicle_id: str) -> VehicleInfo:
        """What is known of a vehicle; an unknown one is class ``other`` without a plate."""
        return self._vehicles.get(vehicle_id) or VehicleInfo(vehicle_id)

    def known(self, vehicle_id: str) -> bool:
        return vehicle_id in self._vehicles

    def __iter__(self) -> Iterator[VehicleInfo]:
        return iter(list(self._vehicles.values()))

    def companies(self) -> frozenset[str]:
        return frozenset(self._fleet_index())

    def fleet(self, company: str) -> frozenset[str]:
        """The ids of the company's vehicles (a company account's scope); none for an unknown company."""
        return self._fleet_index().get(company, frozenset())

    def _fleet_index(self) -> dict[str, frozenset[str]]:
        if self._fleets is None:
            fleets: dict[str, set[str]] = {}
            for v in self._vehicles.values():
                if v.company:
                    fleets.setdefault(v.company, set()).add(v.id)
            self._fleets = {c: frozenset(ids) for c, ids in fleets.items()}
        return self._fleets

    def place_name(self, place_id: str | None) -> str | None:
        """The name of a zone or route (its id when it has none or is gone)."""
        if place_id is None:
            return None
        return self._places.get(place_id, place_id)

    def use_city(self, city: City) -> None:
        for v in (city.vehicles or {}).values():
            self._vehicles[v.id] = VehicleInfo(v.id, v.vehicle_class, v.plate or None, v.company or None)
        self._fleets = None
        names = {z.id: z.name for z in city.zones}
        names.update({r.id: r.name for r in city.routes})
        self._places = names

    def learn(self, vehicles: Iterable[VehicleInfo]) -> None:
        """Vehicles known to the database; the registry wins where both know one."""
        for v in vehicles:
            self._vehicles.setdefault(v.id, v)
        self._fleets = None
