"""The pure case book: the state machine, deadlines raising and ending their
alerts, arrival from noisy fixes alone, leaving and returning, restore."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpsd_server.core import cases as core
from gpsd_server.core.cases import CaseBook, CaseFacts
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import CaseSettings
from tests.fixtures.city import NOON, Track, lonlat

SETTINGS = CaseSettings(
    arrive_radius_m=100.0, arrive_stop_s=60.0, leave_band_m=50.0,
    normal_dispatch_s=600.0, normal_arrive_s=1200.0, normal_handle_s=3600.0, normal_callback_s=7200.0,
    urgent_dispatch_s=0.0,
)  # fmt: skip
PLACE = lonlat(1000, 0)
T0 = NOON


def case(**kw: object) -> CaseFacts:
    base: dict[str, object] = {
        "id": 7, "number": "20240304-0007", "priority": "normal", "category": "street_vending", "lon": PLACE[0],
        "lat": PLACE[1], "state": "accepted", "accepted_at": T0, "zone_id": "G1",
    }  # fmt: skip
    base.update(kw)
    return CaseFacts(**base)  # type: ignore[arg-type]


def dispatched(at: float = T0 + 60, car: str = "PT-001", **kw: object) -> CaseFacts:
    return case(**{"state": "dispatched", "vehicle_id": car, "dispatched_at": at, "assigned_at": at, **kw})


def book() -> CaseBook:
    return CaseBook(SETTINGS, moving_kmh=5.0)


def summary(events: list[core.Event]) -> list[tuple[str, str, str, float]]:
    return [(e.kind, e.phase, e.vehicle_id, e.ts) for e in events]


# -- the state machine ------------------------------------------------------------------------


def test_the_chain_and_what_each_state_allows() -> None:
    assert core.allowed_actions("accepted") == ["dispatch", "cancel", "note"]
    assert core.allowed_actions("dispatched") == ["dispatch", "arrive", "cancel", "note"]
    assert core.allowed_actions("closed") == ["note"] and core.allowed_actions("cancelled") == ["note"]
    chain = [("dispatch", "dispatched"), ("arrive", "arrived"), ("handle", "handled"), ("callback", "called_back"),
             ("close", "closed")]  # fmt: skip
    state: str = "accepted"
    for action, after in chain:
        nxt = core.next_state(state, action)
        assert nxt == after
        state = nxt
    assert core.next_state("arrived", "dispatch") is None and core.next_state("handled", "close") is None


@given(st.lists(st.sampled_from(["dispatch", "arrive", "handle", "callback", "close", "cancel", "note"]), max_size=30))
def test_a_case_closes_only_through_every_step_in_order(actions: list[str]) -> None:
    state: str = "accepted"
    done: list[str] = []
    for action in actions:
        nxt = core.next_state(state, action)
        if nxt is None:
            continue
        if nxt != state and action not in ("note", "dispatch"):
            done.append(action)
        state = nxt
        if state == "closed":
            assert done == ["arrive", "handle", "callback", "close"]
        if state in core.FINAL_STATES:
            assert core.allowed_actions(state) == ["note"]


# -- deadlines ----------------------------------------------------------------------------------


def test_an_overdue_step_raises_once_and_ends_when_done() -> None:
    b = book()
    assert b.put(case()) == []
    assert b.tick(T0 + 599) == []
    started = b.tick(T0 + 600.5)
    assert summary(started) == [("case_dispatch_overdue", "start", core.HOTLINE, T0 + 600)]
    assert started[0].key == "case:7:dispatch" and started[0].zone_id == "G1"
    assert started[0].details["case_number"] == "20240304-0007" and started[0].severity == "warning"
    assert b.tick(T0 + 700) == []
    ended = b.put(dispatched(at=T0 + 900))
    assert summary(ended) == [("case_dispatch_overdue", "end", core.HOTLINE, T0 + 900)]
    assert ended[0].details["overdue_s"] == 300.0 and ended[0].details["outcome"] == "dispatched"
    assert b.open_alerts() == []


def test_a_step_done_late_before_any_tick_still_gets_its_alert() -> None:
    b = book()
    b.put(case())
    events = b.put(dispatched(at=T0 + 601))  # no tick saw it overdue
    assert summary(events) == [
        ("case_dispatch_overdue", "start", core.HOTLINE, T0 + 600),
        ("case_dispatch_overdue", "end", core.HOTLINE, T0 + 601),
    ]


def test_the_arrive_alert_stays_with_the_car_that_was_late_and_cancel_ends_it() -> None:
    b = book()
    b.put(case())
    b.put(dispatched(at=T0 + 60, car="PT-001"))
    late = b.tick(T0 + 60 + 1200)
    assert summary(late) == [("case_arrive_overdue", "start", "PT-001", T0 + 1260)]
    reassigned = dispatched(at=T0 + 60, car="PT-002", assigned_at=T0 + 1300)
    assert b.put(reassigned) == []  # the arrive clock runs from the first dispatch
    cancelled = msgspec_replace(reassigned, state="cancelled", ended_at=T0 + 1400)
    assert summary(b.put(cancelled)) == [("case_arrive_overdue", "end", "PT-001", T0 + 1400)]
    assert len(b) == 0 and not b.watches("PT-002")


def test_a_step_without_deadline_never_raises() -> None:
    b = book()
    b.put(case(priority="urgent"))  # urgent_dispatch_s = 0 here
    assert b.tick(T0 + 86400) == []


def msgspec_replace(f: CaseFacts, **kw: object) -> CaseFacts:
    import msgspec

    return msgspec.structs.replace(f, **kw)


# -- arrival from fixes -----------------------------------------------------------------------


def test_arrival_is_the_first_fix_of_a_stop_within_the_radius() -> None:
    b = book()
    b.put(case())
    b.put(dispatched(at=T0 + 60))
    car = Track("PT-001", T0 + 30, np.random.default_rng(3), sigma_m=8.0)
    before = list(car.park((1000, 10), 30))  # standing there before the dispatch: does not count
    approach = list(car.drive((-1500, 0), (950, 20), 250))  # arrives along the road at ~35 km/h
    stop = list(car.park((960, 30), 180))
    findings, events = b.observe(before + approach + stop)
    assert [(f.kind, f.vehicle_id) for f in findings] == [("arrived", "PT-001")]
    first_stop = stop[0]
    assert findings[0].ts == first_stop.ts and 0 < findings[0].distance_m <= 100
    assert events == [] and b.get(7) is not None and b.get(7).state == "arrived"  # type: ignore[union-attr]
    assert b.on_site(7) is True


def test_driving_through_or_a_short_stop_is_no_arrival() -> None:
    b = book()
    b.put(dispatched())
    car = Track("PT-001", T0 + 100, np.random.default_rng(4))
    through = list(car.drive((0, 0), (2000, 0), 200))  # passes the place at 36 km/h
    light = list(car.park((1040, 0), 40))  # a red light inside the radius, 40 s < 60 s
    away = list(car.drive((1040, 0), (3000, 0), 200))
    findings, _ = b.observe(through + light + away)
    assert findings == []
    assert b.get(7).state == "dispatched"  # type: ignore[union-attr]


def test_leaving_before_handled_and_coming_back_are_recorded() -> None:
    b = book()
    b.put(dispatched())
    car = Track("PT-001", T0 + 100, np.random.default_rng(5))
    fixes = list(car.park((1020, 0), 120)) + list(car.drive((1020, 0), (1400, 0), 60))
    fixes += list(car.drive((1400, 0), (1000, 0), 60)) + list(car.park((1000, 0), 120))
    findings, _ = b.observe(fixes)
    assert [f.kind for f in findings] == ["arrived", "left", "returned"]
    left = findings[1]
    assert left.distance_m > 150 and b.on_site(7) is True
    handled = msgspec_replace(b.get(7), handled_at=car.t, state="handled")  # type: ignore[arg-type]
    b.put(handled)
    assert not b.watches("PT-001")
    assert b.observe(list(car.drive((1000, 0), (3000, 0), 100))) == ([], [])


def test_outliers_late_fixes_and_other_cars_do_not_count() -> None:
    b = book()
    b.put(dispatched(car="PT-001"))
    other = Track("PT-009", T0 + 100, np.random.default_rng(6), sigma_m=0)
    mine = Track("PT-001", T0 + 100, np.random.default_rng(6), sigma_m=0)
    fixes = list(other.park((1000, 0), 300))
    fixes += [
        msgspec_fix(f, flags=int(FixFlag.JUMP | FixFlag.FILTERED)) for f in mine.park((1000, 0), 300)
    ]  # outliers at the place
    findings, _ = b.observe(fixes)
    assert findings == []


def msgspec_fix(f: Fix, **kw: object) -> Fix:
    import msgspec

    return msgspec.structs.replace(f, **kw)


def test_the_arrive_alert_ends_at_the_arrival_the_fixes_show() -> None:
    b = book()
    b.put(dispatched(at=T0))
    assert len(b.tick(T0 + 1200)) == 1
    car = Track("PT-001", T0 + 1500, np.random.default_rng(7))
    findings, events = b.observe(list(car.park((1000, 0), 120)))
    assert [f.kind for f in findings] == ["arrived"]
    assert summary(events) == [("case_arrive_overdue", "end", "PT-001", findings[0].ts)]
    assert events[0].details["overdue_s"] == pytest.approx(findings[0].ts - (T0 + 1200))


# -- restore ------------------------------------------------------------------------------------


def test_restore_raises_nothing_twice_and_ends_what_was_done_meanwhile() -> None:
    b = book()
    f = dispatched(at=T0 + 60)
    assert b.restore(f, {"arrive": "PT-001"}) == []
    assert b.tick(T0 + 86400) == []  # the open arrive alert is not raised again
    assert b.tick(T0 + 86400) == []
    b2 = book()
    arrived = msgspec_replace(f, state="arrived", arrived_at=T0 + 1500)
    ended = b2.restore(arrived, {"arrive": "PT-001"})  # its end was not stored before the restart
    assert summary(ended) == [("case_arrive_overdue", "end", "PT-001", T0 + 1500)]
    assert b2.restore(case(id=8, state="closed", ended_at=T0), {}) == [] and b2.get(8) is None


# -- the seal ---------------------------------------------------------------------------------


def test_each_event_seals_the_ones_before_it() -> None:
    args = {"case_id": 1, "seq": 1, "kind": "created", "at_us": 1, "by": "op", "comment": "", "data": {"a": 1.5}}
    first = core.audit_digest(core.GENESIS, **args)  # type: ignore[arg-type]
    assert first == core.audit_digest(core.GENESIS, **args)  # type: ignore[arg-type]
    for key, value in (("comment", "x"), ("at_us", 2), ("by", "other"), ("data", {"a": 1.6}), ("seq", 2)):
        assert core.audit_digest(core.GENESIS, **{**args, key: value}) != first  # type: ignore[arg-type]
    assert core.audit_digest(first, **args) != first  # type: ignore[arg-type]
    assert core.parse_alert_key("case:12:arrive") == (12, "arrive") and core.parse_alert_key("zone:x") is None
