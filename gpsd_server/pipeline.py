"""One batch cycle: decode -> engine -> writer + live hub, with rejections
counted, logged once per reason per interval and sent to the dead letters.

This is the seam between the pure core and the drivers: it owns the clock
(``now`` is read once per cycle and passed down) and nothing in here blocks
except ``writer.put`` when the database queue is full (flow control).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gpsd_server import alerts, wire
from gpsd_server.core.decode import Decoder
from gpsd_server.core.engine import Engine, EngineResult
from gpsd_server.core.rules import presence
from gpsd_server.directory import VehicleDirectory
from gpsd_server.errors import DecodeError
from gpsd_server.ledger import AlertLedger
from gpsd_server.model import Event, Fix, FixFlag
from gpsd_server.sinks.hub import LivePosition, LiveSink
from gpsd_server.store.batch import AlertRow, FlagCorrection

log = logging.getLogger(__name__)

_LATE = int(FixFlag.LATE)  # an int test: ``flags & FixFlag.LATE`` builds a Flag per fix
_NOFIX = int(FixFlag.NOFIX)
_NOT_LIVE = int(FixFlag.LATE | FixFlag.NOFIX | FixFlag.JUMP | FixFlag.FILTERED)
DeadLetter = Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]]  # (topic, payload) of a batch's rejects


class Received(Protocol):
    """A message from the broker (an MQTT client's message type fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message built by hand (tests, tools)."""

    topic: str
    payload: bytes


class TrackSink(Protocol):
    """Where fixes and alerts go to become durable (the track writer)."""

    async def put(
        self, fixes: Sequence[Fix], alerts: Sequence[AlertRow] = (), corrections: Sequence[FlagCorrection] = ()
    ) -> Awaitable[None]: ...


@dataclass(slots=True)
class RejectLog:
    """Counts rejections by reason; logs each reason at most once per interval."""

    interval_s: float
    total: Counter[str] = field(default_factory=Counter)
    _pending: Counter[str] = field(default_factory=Counter)
    _example: dict[str, str] = field(default_factory=dict)
    _last_log: float = 0.0

    def record(self, reason: str, example: str) -> None:
        self.total[reason] += 1
        self._pending[reason] += 1
        self._example.setdefault(reason, example)

    def maybe_log(self, now: float) -> None:
        if not self._pending or now - self._last_log < self.interval_s:
            return
        for reason, n in sorted(self._pending.items()):
            log.warning("rejected %d item(s): %s (e.g. %s)", n, reason, self._example[reason])
        self._pending.clear()
        self._example.clear()
        self._last_log = now


class CaseWatch(Protocol):
    """12319 cases (the case driver): the batch's fixes for arrival, the clock
    for deadlines; both answer with alert events for the ledger."""

    def observe(self, fixes: Sequence[Fix], now: float) -> list[Event]: ...
    def tick(self, now: float) -> list[Event]: ...


class Takeover(Protocol):
    """A scale-out worker's restore of vehicles it sees for the first time
    (vehicle -> the partition its message came on)."""

    async def ensure(self, owners: dict[str, int]) -> None: ...


class Pipeline:
    def __init__(
        self,
        *,
        decoder: Decoder,
        engine: Engine,
        ledger: AlertLedger,
        directory: VehicleDirectory,
        writer: TrackSink,
        hub: LiveSink,
        dead_letter_topic: str,
        reject_log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.decoder = decoder
        self._engine = engine
        self._ledger = ledger
        self._directory = directory
        self._writer = writer
        self._hub = hub
        self._dead_letter_topic = dead_letter_topic.rstrip("/")
        self.dead_letter: DeadLetter | None = None
        self.cases: CaseWatch | None = None
        self.takeover: Takeover | None = None
        self.rejects = RejectLog(reject_log_interval_s)
        self._clock = clock
        self.fixes_accepted = 0
        self.fixes_late = 0
        self.fixes_nofix = 0  # alarm/status messages without a position: rules only, no track point
        self.engine_errors = 0  # batches the rules failed on: stored without their events
        self._engine_error_logged = -math.inf

    def _judge(self, fixes: list[Fix], now: float) -> EngineResult:
        """The engine's verdict; if it fails (a defect of ours on some state or
        input) the fixes are still stored, without rules, and counted.

        Raised, it ended the server, and the broker redelivered the same
        messages to every restart: the city dark for one bad batch (the
        decoders' twin of this, ``decoder_error``, was seen on 2026-12-06)."""
        try:
            return self._engine.process(fixes, now)
        except Exception:
            self.engine_errors += 1
            if now - self._engine_error_logged >= 60.0:  # the traceback, at most once a minute
                self._engine_error_logged = now
                log.exception("rules failed on a batch of %d fixes (stored without rules; %d such batches so far)",
                              len(fixes), self.engine_errors)  # fmt: skip
            return EngineResult(fixes=fixes)

    async def handle(self, batch: Sequence[Received]) -> Awaitable[None]:
        """Process one batch; returns what completes once it is durable."""
        now = self._clock()
        fixes: list[Fix] = []
        dead: list[tuple[str, bytes]] = []
        owners: dict[str, int] = {}
        for msg in batch:
            for item in self.decoder.decode(msg.topic, msg.payload, now):
                if isinstance(item, DecodeError):
                    self.rejects.record(item.reason, f"{msg.topic}: {item.detail}")
                    dead.append(self._dead_letter(msg, item))
                else:
                    fixes.append(item)
                    if self.takeover is not None:
                        owners[item.vehicle_id] = getattr(msg, "partition", 0)
        self.rejects.maybe_log(now)
        if owners and self.takeover is not None:
            await self.takeover.ensure(owners)
        result = self._judge(fixes, now)
        events = result.events
        if self.cases is not None and (arrivals := self.cases.observe(result.fixes, now)):
            events = [*events, *arrivals]
        rows = self._ledger.rows(events, now)
        track = [f for f in result.fixes if not f.flags & _NOFIX]
        corrections = [FlagCorrection(c.vehicle_id, c.ts, c.flags) for c in result.corrections]
        durable = await self._writer.put(track, rows, corrections)
        self.fixes_accepted += len(result.fixes)
        self.fixes_nofix += len(result.fixes) - len(track)
        live = []
        directory = self._directory
        for f in track:
            if f.flags & _NOT_LIVE:  # late, or an outlier: not where the vehicle is now
                if f.flags & _LATE:
                    self.fixes_late += 1
                continue
            info = directory.info(f.vehicle_id)
            live.append(
                LivePosition(
                    f.vehicle_id, f.ts, f.lon, f.lat, f.speed_kmh, f.heading, info.vehicle_class, info.plate, f.alarm
                )
            )
        hub = self._hub
        hub.publish_positions(live)
        if rows:
            zones = hub.reads_zone_records
            hub.publish_alerts(alerts.from_raised(a, directory) for a in rows if zones or a.event.kind != presence.KIND)
        if dead and self.dead_letter is not None:
            await self.dead_letter(dead)
        return durable

    async def tick(self) -> None:
        """Time-driven rules (offline): the driver calls this periodically."""
        now = self._clock()
        events = self._engine.tick(now)
        if self.cases is not None:
            events += self.cases.tick(now)
        await self.raise_events(events, now)

    async def raise_events(self, events: Sequence[Event], now: float) -> None:
        """Alert events from outside a batch (the clock, a 12319 case changed by
        an operator): the same ledger, writer and hub as the engine's."""
        rows = self._ledger.rows(events, now)
        if rows:
            await self._writer.put((), rows)
            self._hub.publish_alerts(alerts.from_raised(a, self._directory) for a in rows)

    def _dead_letter(self, msg: Received, err: DecodeError) -> tuple[str, bytes]:
        body = {
            "topic": msg.topic,
            "reason": err.reason,
            "detail": err.detail,
            "index": err.index,
            "payload": msg.payload[:4096].decode("utf-8", "replace"),
        }
        return f"{self._dead_letter_topic}/{err.reason}", wire.encode(body)
