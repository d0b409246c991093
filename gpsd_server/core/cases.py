"""12319 cases, pure: the state machine, the deadlines the server watches and
arrival from GPS fixes alone.

A case is ``accepted`` when the hotline (or a patrol, a camera, an
information point) files it, then ``dispatched`` to a patrol car, ``arrived``
when that car stops at the place, ``handled``, ``called_back`` (the citizen
was called) and ``closed``; it can be ``cancelled`` from any state before
closed. Each change is an audit event (who, when, a comment); the drivers
store them in a trail that cannot be edited (see :func:`audit_digest`).

Deadlines are per priority and per step, each step's clock starting when the
step before it ended: ``dispatch`` from acceptance, ``arrive`` from the first
dispatch, ``handle`` from arrival, ``callback`` from handling. A step past its
deadline raises an alert ``case_<step>_overdue`` (an :class:`Event` like any
rule's, so it reaches the desk through the ledger and the writer) and ends it
when the step is done, or the case is cancelled. A step done late before the
tick saw it still gets its alert, started and ended at once: the desk's
history and the reports count every late step.

Arrival: the dispatched car's fixes (fix time) are watched by an
:class:`ArrivalWatch`. A fix within ``arrive_radius_m`` of the case below
``moving_kmh`` starts a stop; a later stopped fix still within the radius at
least ``arrive_stop_s`` after it confirms it, and the case is arrived at the
stop's first fix (its time and distance). Driving through, or a red light
inside the radius shorter than ``arrive_stop_s``, is no arrival. Once arrived
and until handled, a fix beyond radius + ``leave_band_m`` records that the car
left, and a new confirmed stop that it returned.

Everything here takes values and ``now`` and returns values and events; the
case driver (:mod:`gpsd_server.cases`) does the I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gpsd_server.core.geo import haversine_m
from gpsd_server.model import Event, Fix, FixFlag, Severity
from gpsd_server.settings import CASE_PRIORITIES, CaseSettings

State = Literal["accepted", "dispatched", "arrived", "handled", "called_back", "closed", "cancelled"]
Action = Literal["dispatch", "arrive", "handle", "callback", "close", "cancel", "note"]
Step = Literal["dispatch", "arrive", "handle", "callback"]
Channel = Literal["hotline", "patrol", "camera", "info_point"]
Finding = Literal["arrived", "left", "returned"]

STATES: tuple[State, ...] = ("accepted", "dispatched", "arrived", "handled", "called_back", "closed", "cancelled")
FINAL_STATES: frozenset[str] = frozenset(("closed", "cancelled"))
OPEN_STATES: tuple[State, ...] = tuple(s for s in STATES if s not in FINAL_STATES)
CHANNELS: tuple[Channel, ...] = ("hotline", "patrol", "camera", "info_point")
PRIORITIES = CASE_PRIORITIES
STEPS: tuple[Step, ...] = ("dispatch", "arrive", "handle", "callback")
HOTLINE = "12319"  # the alerts' vehicle while no car is on the case
ALERT_KINDS: frozenset[str] = frozenset(f"case_{s}_overdue" for s in STEPS)
ALERT_PREFIX = "case:"
GPS = "gps"  # who detected what the fixes show

# (state, action) -> the state after it. ``dispatch`` while dispatched sends
# another car (the arrive clock keeps running from the first dispatch).
TRANSITIONS: Mapping[tuple[str, str], State] = {
    ("accepted", "dispatch"): "dispatched",
    ("dispatched", "dispatch"): "dispatched",
    ("dispatched", "arrive"): "arrived",
    ("arrived", "handle"): "handled",
    ("handled", "callback"): "called_back",
    ("called_back", "close"): "closed",
    **{(s, "cancel"): "cancelled" for s in OPEN_STATES},
    **{(s, "note"): s for s in STATES},
}
# The step a case in this state waits for.
PENDING: Mapping[str, Step] = {
    "accepted": "dispatch", "dispatched": "arrive", "arrived": "handle", "handled": "callback",
}  # fmt: skip
# The audit event an action writes (a second dispatch is a reassignment).
EVENT_OF_ACTION: Mapping[str, str] = {
    "dispatch": "dispatched", "arrive": "arrived", "handle": "handled", "callback": "called_back",
    "close": "closed", "cancel": "cancelled", "note": "note",
}  # fmt: skip
_SKIP = int(FixFlag.LATE | FixFlag.NOFIX | FixFlag.JUMP | FixFlag.FILTERED)  # not where the car is now


def next_state(state: str, action: str) -> State | None:
    """The state after ``action``, or None when the action is not allowed now."""
    return TRANSITIONS.get((state, action))


def allowed_actions(state: str) -> list[str]:
    return [a for (s, a) in TRANSITIONS if s == state]


def alert_kind(step: str) -> str:
    return f"case_{step}_overdue"


def alert_key(case_id: int, step: str) -> str:
    return f"{ALERT_PREFIX}{case_id}:{step}"


def parse_alert_key(key: str) -> tuple[int, Step] | None:
    """``case:17:arrive`` -> (17, "arrive")."""
    if not key.startswith(ALERT_PREFIX):
        return None
    ident, _, step = key[len(ALERT_PREFIX) :].partition(":")
    if not ident.isdigit() or step not in STEPS:
        return None
    return int(ident), step


class CaseFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the core needs to know of a case (times: POSIX seconds)."""

    id: int
    number: str
    priority: str
    category: str
    lon: float
    lat: float
    state: State
    accepted_at: float
    vehicle_id: str | None = None  # the car on the case now
    zone_id: str | None = None  # its grid (or district): what the desk highlights
    dispatched_at: float | None = None  # the first dispatch (the arrive clock)
    assigned_at: float | None = None  # the current car's dispatch (its fixes count from here)
    arrived_at: float | None = None
    handled_at: float | None = None
    called_back_at: float | None = None
    ended_at: float | None = None  # closed or cancelled

    def step_started(self, step: str) -> float | None:
        return {
            "dispatch": self.accepted_at,
            "arrive": self.dispatched_at,
            "handle": self.arrived_at,
            "callback": self.handled_at,
        }.get(step)

    def step_done(self, step: str) -> float | None:
        """When the step ended: done, or cut short by cancelling."""
        done = {
            "dispatch": self.dispatched_at,
            "arrive": self.arrived_at,
            "handle": self.handled_at,
            "callback": self.called_back_at,
        }.get(step)
        return done if done is not None else self.ended_at

    @property
    def pending(self) -> Step | None:
        return PENDING.get(self.state)


class GpsFinding(msgspec.Struct, frozen=True, kw_only=True):
    """What a dispatched car's fixes showed: it arrived, left or came back."""

    case_id: int
    kind: Finding
    vehicle_id: str
    ts: float  # fix time
    lon: float
    lat: float
    distance_m: float


# -- arrival -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ArrivalWatch:
    """One dispatched car against one case place, fed the car's fixes in time order."""

    lon: float
    lat: float
    since: float  # fixes before the dispatch do not count
    radius_m: float
    band_m: float
    stop_s: float
    moving_kmh: float
    on_site: bool = False
    arrived: bool = False  # once arrived, a new stop is a return
    stop: tuple[float, float, float, float] | None = None  # ts, lon, lat, distance of the stop's first fix
    last_ts: float = float("-inf")

    def step(self, fix: Fix) -> tuple[Finding, float, float, float, float] | None:
        """(finding, ts, lon, lat, distance) when this fix shows one."""
        if fix.ts < self.since or fix.ts <= self.last_ts:
            return None
        self.last_ts = fix.ts
        d = haversine_m(self.lon, self.lat, fix.lon, fix.lat)
        if self.on_site:
            if d > self.radius_m + self.band_m:
                self.on_site = False
                return ("left", fix.ts, fix.lon, fix.lat, d)
            return None
        if d > self.radius_m:
            self.stop = None
            return None
        stopped = (fix.speed_kmh or 0.0) < self.moving_kmh
        if self.stop is None:
            if not stopped:
                return None
            self.stop = (fix.ts, fix.lon, fix.lat, d)
        if stopped and fix.ts - self.stop[0] >= self.stop_s:
            ts, lon, lat, dist = self.stop
            self.stop = None
            self.on_site = True
            finding: Finding = "returned" if self.arrived else "arrived"
            self.arrived = True
            return (finding, ts, lon, lat, dist)
        return None


# -- the book of open cases ------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    facts: CaseFacts
    watch: ArrivalWatch | None = None
    alerts: dict[str, str] = field(default_factory=dict)  # step -> vehicle id of its open overdue alert
    raised: set[str] = field(default_factory=set)  # steps whose overdue alert was raised


class CaseBook:
    """The open cases: their deadlines, their alerts and the cars watched for arrival."""

    def __init__(self, settings: CaseSettings, *, moving_kmh: float) -> None:
        self.settings = settings
        self.moving_kmh = moving_kmh
        self._cases: dict[int, _Entry] = {}
        self._by_vehicle: dict[str, set[int]] = {}  # watched car -> its cases

    def __len__(self) -> int:
        return len(self._cases)

    def __iter__(self) -> Iterator[CaseFacts]:
        return iter([e.facts for e in self._cases.values()])

    def get(self, case_id: int) -> CaseFacts | None:
        entry = self._cases.get(case_id)
        return None if entry is None else entry.facts

    def on_site(self, case_id: int) -> bool | None:
        """Is the car at the place (None: not watched)?"""
        entry = self._cases.get(case_id)
        if entry is None or entry.watch is None or not entry.watch.arrived:
            return None
        return entry.watch.on_site

    def cases_of(self, vehicle_id: str) -> list[CaseFacts]:
        """The open cases a car is on."""
        return [e.facts for e in self._cases.values() if e.facts.vehicle_id == vehicle_id]

    def watches(self, vehicle_id: str) -> bool:
        return vehicle_id in self._by_vehicle

    def open_alerts(self) -> list[tuple[int, str, str]]:
        """(case id, step, vehicle id) of every overdue alert still open."""
        return [(cid, step, v) for cid, e in self._cases.items() for step, v in e.alerts.items()]

    def deadline_s(self, facts: CaseFacts, step: str) -> float:
        return self.settings.deadline_s(facts.priority, step) if facts.priority in PRIORITIES else 0.0

    def due(self, facts: CaseFacts, step: str) -> float | None:
        """When the step becomes overdue (None: no deadline, or not started)."""
        limit = self.deadline_s(facts, step)
        started = facts.step_started(step)
        return None if limit <= 0 or started is None else started + limit

    # -- changes -------------------------------------------------------------------------

    def put(self, facts: CaseFacts) -> list[Event]:
        """A case as it is now (filed, or after a change): ends the alerts of
        steps no longer pending, raises the ones done late that no tick saw,
        and watches the car. A closed or cancelled case leaves the book."""
        entry = self._cases.get(facts.id)
        if entry is None:
            entry = self._cases[facts.id] = _Entry(facts)
        previous = entry.facts
        entry.facts = facts
        events = self._settle(entry)
        self._rewatch(entry, previous)
        if facts.state in FINAL_STATES:
            self._forget(facts.id)
        return events

    def restore(self, facts: CaseFacts, open_alerts: Mapping[str, str]) -> list[Event]:
        """After a restart: an open case and its overdue alerts still open
        (step -> vehicle id). Returns the ends of alerts whose step was done
        before the restart (the end was not stored). The driver then replays
        the car's stored fixes since its dispatch (or its arrival) through
        :meth:`observe`, so the watch is where the fixes say."""
        entry = self._cases[facts.id] = _Entry(facts, alerts=dict(open_alerts), raised=set(open_alerts))
        # Steps before the pending one are done: their alerts were raised, or
        # never needed; never raise them again.
        for step in STEPS:
            if step == facts.pending:
                break
            entry.raised.add(step)
        self._rewatch(entry, None)
        if entry.watch is not None and facts.state == "arrived" and facts.arrived_at is not None:
            entry.watch.since = max(entry.watch.since, facts.arrived_at)
        events = self._settle(entry)
        if facts.state in FINAL_STATES:
            self._forget(facts.id)
        return events

    def _settle(self, entry: _Entry) -> list[Event]:
        facts = entry.facts
        events: list[Event] = []
        for step in STEPS:
            if step == facts.pending:
                break
            done = facts.step_done(step)
            if done is None:
                continue
            due = self.due(facts, step)
            if step not in entry.raised and due is not None and done > due:
                events.append(self._start(entry, step, due))
            if step in entry.alerts:
                events.append(self._end(entry, step, done))
        return events

    def _rewatch(self, entry: _Entry, previous: CaseFacts | None) -> None:
        facts = entry.facts
        watching = facts.state in ("dispatched", "arrived") and facts.vehicle_id is not None
        same_car = (
            previous is not None
            and entry.watch is not None
            and previous.vehicle_id == facts.vehicle_id
            and previous.assigned_at == facts.assigned_at
        )
        if watching and not same_car:
            if previous is not None and previous.vehicle_id:
                self._unwatch(facts.id, previous.vehicle_id)
            s = self.settings
            since = facts.assigned_at if facts.assigned_at is not None else facts.dispatched_at or facts.accepted_at
            entry.watch = ArrivalWatch(
                facts.lon, facts.lat, since, s.arrive_radius_m, s.leave_band_m, s.arrive_stop_s, self.moving_kmh
            )
            self._by_vehicle.setdefault(facts.vehicle_id, set()).add(facts.id)  # type: ignore[arg-type]
        if watching and entry.watch is not None and facts.state == "arrived" and not entry.watch.arrived:
            entry.watch.arrived = entry.watch.on_site = True  # arrived by hand: watch for leaving
        if not watching and entry.watch is not None:
            if previous is not None and previous.vehicle_id:
                self._unwatch(facts.id, previous.vehicle_id)
            if facts.vehicle_id:
                self._unwatch(facts.id, facts.vehicle_id)
            entry.watch = None

    def _unwatch(self, case_id: int, vehicle_id: str) -> None:
        ids = self._by_vehicle.get(vehicle_id)
        if ids is not None:
            ids.discard(case_id)
            if not ids:
                del self._by_vehicle[vehicle_id]

    def _forget(self, case_id: int) -> None:
        entry = self._cases.pop(case_id)
        if entry.facts.vehicle_id:
            self._unwatch(case_id, entry.facts.vehicle_id)

    # -- what the fixes and the clock bring -----------------------------------------------

    def observe(self, fixes: Iterable[Fix]) -> tuple[list[GpsFinding], list[Event]]:
        """The batch's fixes (any vehicles, in time order per vehicle): what the
        watched cars' fixes show, and the alerts that ends (an arrival ends the
        arrive step). Outliers and late fixes do not count."""
        findings: list[GpsFinding] = []
        events: list[Event] = []
        by_vehicle = self._by_vehicle
        if not by_vehicle:
            return findings, events
        for fix in fixes:
            if fix.vehicle_id not in by_vehicle or fix.flags & _SKIP:
                continue
            for case_id in sorted(by_vehicle[fix.vehicle_id]):
                entry = self._cases[case_id]
                if entry.watch is None:
                    continue
                seen = entry.watch.step(fix)
                if seen is None:
                    continue
                kind, ts, lon, lat, dist = seen
                findings.append(
                    GpsFinding(
                        case_id=case_id, kind=kind, vehicle_id=fix.vehicle_id, ts=ts, lon=lon, lat=lat,
                        distance_m=round(dist, 1),
                    )
                )  # fmt: skip
                if kind == "arrived" and entry.facts.state == "dispatched":
                    entry.facts = msgspec.structs.replace(entry.facts, state="arrived", arrived_at=ts)
                    events += self._settle(entry)
        return findings, events

    def tick(self, now: float) -> list[Event]:
        """Raise the alerts of pending steps past their deadline (once each)."""
        events = []
        for entry in self._cases.values():
            step = entry.facts.pending
            if step is None or step in entry.raised:
                continue
            due = self.due(entry.facts, step)
            if due is not None and now >= due:
                events.append(self._start(entry, step, due))
        return events

    # -- alerts ----------------------------------------------------------------------------

    def _details(self, facts: CaseFacts, step: str, due: float) -> dict[str, Any]:
        return {
            "case_id": facts.id, "case_number": facts.number, "step": step, "priority": facts.priority,
            "category": facts.category, "deadline_s": self.deadline_s(facts, step), "due_at": due,
            "started_at": due,
        }  # fmt: skip

    def _start(self, entry: _Entry, step: str, due: float) -> Event:
        facts = entry.facts
        # Dispatching late is the desk's, never a car's; a late step after it, the car's on the case.
        vehicle = HOTLINE if step == "dispatch" else facts.vehicle_id or HOTLINE
        entry.raised.add(step)
        entry.alerts[step] = vehicle
        severity: Severity = "critical" if facts.priority == "urgent" else "warning"
        return Event(
            alert_kind(step), "start", vehicle, due, facts.lon, facts.lat, alert_key(facts.id, step), severity,
            zone_id=facts.zone_id, details=self._details(facts, step, due),
        )  # fmt: skip

    def _end(self, entry: _Entry, step: str, done: float) -> Event:
        facts = entry.facts
        vehicle = entry.alerts.pop(step)
        due = self.due(facts, step)
        details = self._details(facts, step, due if due is not None else done)
        details.update(done_at=done, overdue_s=round(max(0.0, done - (due or done)), 1), outcome=facts.state)
        severity: Severity = "critical" if facts.priority == "urgent" else "warning"
        return Event(
            alert_kind(step), "end", vehicle, done, facts.lon, facts.lat, alert_key(facts.id, step), severity,
            zone_id=facts.zone_id, details=details,
        )  # fmt: skip


# -- the audit trail -------------------------------------------------------------------------

GENESIS = bytes(32)


def audit_digest(
    previous: bytes, *, case_id: int, seq: int, kind: str, at_us: int, by: str, comment: str, data: Mapping[str, Any]
) -> bytes:
    """SHA-256 over the previous event's digest and this event, canonically:
    each event seals the ones before it, so an edit anywhere in a case's trail
    (even by someone who can bypass the database's append-only trigger) breaks
    every digest after it. ``at_us``: microseconds since the epoch."""
    body = json.dumps(
        [case_id, seq, kind, at_us, by, comment, data], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(previous + body.encode()).digest()


# -- what operators and the page read (labels, refusals, proposals) ------------------------

CHANNEL_LABEL = {"hotline": "12319热线", "patrol": "巡查上报", "camera": "视频发现", "info_point": "信息采集点"}
PRIORITY_LABEL = {"urgent": "紧急", "high": "较急", "normal": "一般"}
STATE_LABEL = {
    "accepted": "已受理", "dispatched": "已派遣", "arrived": "已到场", "handled": "已处置",
    "called_back": "已回访", "closed": "已结案", "cancelled": "已撤销",
}  # fmt: skip
STEP_LABEL = {"dispatch": "派遣", "arrive": "到场", "handle": "处置", "callback": "回访"}


class CaseRefused(Exception):
    """What was asked does not fit the case: ``parameter`` names why (``case_id``
    for a missing case, ``state`` for an action the state does not allow)."""

    def __init__(self, parameter: str, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.parameter, self.reason, self.status = parameter, reason, status


@dataclass(frozen=True, slots=True)
class Proposal:
    """A patrol car offered for a case, by ETA."""

    id: str
    plate: str | None
    lon: float
    lat: float
    age_s: float
    distance_m: float  # straight line
    route_m: float  # along the estimate's way
    eta_min: float
    method: str  # road | straight
    busy: tuple[str, ...]  # numbers of the open cases it is on
    path: tuple[tuple[float, float], ...] = ()
