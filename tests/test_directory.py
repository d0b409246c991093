"""The vehicle directory's fleets: a company account's scope."""

from __future__ import annotations

from gpsd_server.directory import VehicleDirectory, VehicleInfo


def test_a_company_fleet_follows_the_registry_and_what_the_database_knows() -> None:
    d = VehicleDirectory()
    d.learn([VehicleInfo("MT-1", "muck_truck", "湘A·1", "甲"), VehicleInfo("MT-2", "muck_truck", None, "乙"),
             VehicleInfo("PC-1", "patrol", None, None)])  # fmt: skip
    assert d.fleet("甲") == {"MT-1"} and d.fleet("乙") == {"MT-2"} and d.fleet("丙") == frozenset()
    assert d.companies() == {"甲", "乙"}
    d.learn([VehicleInfo("MT-3", "muck_truck", None, "甲")])  # a vehicle first seen in the database
    assert d.fleet("甲") == {"MT-1", "MT-3"}
