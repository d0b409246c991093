"""What the track writer does next: batching, outages and the spool, as a
pure state machine (no I/O, no clock: the driver passes ``now``).

The driver asks :meth:`WriterPolicy.next` with what it holds (rows queued in
memory, spooled bytes not yet replayed) and performs the answer, then reports
the outcome back (``written``, ``write_failed``, ``probed``, ``spooled``,
``spool_is_full``). Everything the writer decides is here, so it is tested by
feeding situations and asserting actions (``tests/sinks/tracks``), without a
database:

- database up, nothing spooled: ``write`` a batch, after a short group-commit
  wait while the queue holds less than a batch;
- database up, spool backlog: ``replay`` it first, in order (spooling the
  queue meanwhile if it fills past half, so intake keeps flowing);
- database away: ``spool`` the queue (one fsync per ``spool_fsync_ms``),
  ``probe`` the database with jittered backoff, else ``wait``;
- closing: drain within ``shutdown_timeout_s``, then ``final`` (spool what is
  left; what does not fit stays unacknowledged for the broker to redeliver).

Without a spool (``spool=False``: a scale-out worker, whose partitions another
worker takes over, must not acknowledge what only its own disk holds) the
spool is simply always full: while the database is away the queue waits,
intake is held back and the broker keeps the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gpsd_server.backoff import Backoff
from gpsd_server.settings import DatabaseSettings

ActionKind = Literal["write", "replay", "spool", "probe", "wait", "final", "finish"]


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    delay_s: float = 0.0  # write/spool: wait this long first (group commit); wait: at most this long
    then_spool: bool = False  # replay: also spool the queue afterwards (it is filling up)


FINISH = Action("finish")
FINAL = Action("final")
PROBE = Action("probe")
REPLAY = Action("replay")


class WriterPolicy:
    def __init__(self, settings: DatabaseSettings, backoff: Backoff | None = None, *, spool: bool = True) -> None:
        self.batch_rows = min(settings.batch_rows, settings.batch_max_rows)
        self.queue_max_rows = settings.queue_max_rows
        self.flush_interval_s = settings.flush_interval_ms / 1000
        self.fsync_interval_s = settings.spool_fsync_ms / 1000
        self.shutdown_timeout_s = settings.shutdown_timeout_s
        self._backoff = backoff or Backoff(settings.retry_min_s, settings.retry_max_s)
        self.db_up = True
        self.can_spool = spool
        self.spool_full = not spool
        self.closing = False
        self.deadline = math.inf
        self.next_probe = 0.0
        self.last_sync = -math.inf
        self.outages = 0  # times the database went away
        self._closing_probed = False

    # -- the decision ---------------------------------------------------------

    def next(self, now: float, queued_rows: int, backlog_bytes: int) -> Action:
        """The next thing to do, given what is queued in memory and waits in the spool."""
        if self.closing and now >= self.deadline:
            return FINAL
        if self.db_up and backlog_bytes:
            return Action("replay", then_spool=queued_rows >= self.queue_max_rows // 2)
        if not self.db_up:
            if queued_rows and not self.spool_full:
                wait = 0.0 if self.closing else max(0.0, self.last_sync + self.fsync_interval_s - now)
                return Action("spool", delay_s=wait)
            if self.closing:
                # Nothing more can be spooled: done, unless the database is back
                # to take the backlog (asked once).
                if backlog_bytes and not self._closing_probed:
                    self._closing_probed = True
                    return PROBE
                return FINAL
            if now >= self.next_probe:
                return PROBE
            return Action("wait", delay_s=self.next_probe - now)
        if not queued_rows:
            return FINISH if self.closing else Action("wait", delay_s=math.inf)
        if queued_rows < self.batch_rows and not self.closing:
            # Group commit: wait briefly for more rows. Under load the previous
            # write's duration does the batching; the wait stays short because
            # acknowledgements (and so the broker's window) wait for the commit.
            return Action("write", delay_s=self.flush_interval_s)
        return Action("write")

    # -- outcomes -------------------------------------------------------------

    def close(self, now: float) -> None:
        if not self.closing:
            self.closing = True
            self.deadline = now + self.shutdown_timeout_s

    def written(self) -> None:
        self.db_up = True

    def write_failed(self, now: float) -> bool:
        """The database refused a write (after the driver's one retry); True when
        this starts an outage (the driver logs it)."""
        started = self.db_up
        if started:
            self.outages += 1
        self.db_up = False
        self.next_probe = now + self._backoff.next()
        return started

    def probed(self, now: float, ok: bool) -> None:
        if ok:
            self.db_up = True
            self._backoff.reset()
        else:
            self.write_failed(now)

    def spooled(self, now: float, *, queue_empty: bool) -> bool:
        """Records appended and fsynced; True when a full spool has room again."""
        self.last_sync = now
        if self.spool_full and queue_empty and self.can_spool:
            self.spool_full = False
            return True
        return False

    def spool_is_full(self) -> bool:
        """The spool refused a record; True the first time (the driver logs an error)."""
        first = not self.spool_full
        self.spool_full = True
        return first

    def replayed_all(self) -> None:
        self.spool_full = not self.can_spool
