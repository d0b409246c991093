"""The track writer's driver: a bounded queue in front of batched binary COPY,
with a disk spool for when the database is away, in a thread of its own.

``put(fixes, alerts)`` (on the event loop) returns a future that resolves
once they are durable, so a caller can acknowledge its source only then.
Durable means committed, or, while the database is unreachable, fsynced in
the spool (:mod:`.spool`). Ingest therefore keeps going through an outage:
live positions and alerts still reach the websockets.

Every decision (batch, spool, replay, probe, wait, finish) is the pure
:class:`~.policy.WriterPolicy`'s; this module only performs them. It runs in
its own thread with a blocking psycopg connection: a batch written through an
asyncio connection needed about 17 turns of an event loop that ingest cycles
hold for up to a tenth of a second, so under load each write waited for
many cycles. Here it waits for the database only, and completion comes back
to the loop with ``call_soon_threadsafe``.

A batch is written in one idempotent transaction
(:func:`gpsd_server.store.batch.write_batch`), so a batch written twice,
after an unclear commit, a crash or a replay, stores nothing twice. A write
that hangs is ended by the connection's own limits (``statement_timeout`` and
``tcp_user_timeout`` at ``write_timeout_s``), never by abandoning it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psycopg

from gpsd_server.errors import ClusterError, SpoolError
from gpsd_server.model import Fix
from gpsd_server.settings import DatabaseSettings
from gpsd_server.sinks.tracks.policy import Action, WriterPolicy
from gpsd_server.sinks.tracks.spool import Spool
from gpsd_server.store.batch import (
    DEFAULT_MILEAGE,
    AlertRow,
    FlagCorrection,
    MileageRule,
    number_left_over_alerts,
    open_writer_connection,
    write_batch,
)

__all__ = ["AlertRow", "TrackWriter", "WriterStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SessionOp = Callable[[psycopg.Connection[Any]], Any]


@dataclass(slots=True)
class WriterStats:
    rows_in: int = 0  # rows handed to put()
    rows_copied: int = 0  # rows committed through COPY (duplicates included)
    rows_inserted: int = 0  # new rows in fixes
    batches: int = 0
    failures: int = 0  # failed database attempts (each one spooled or retried)
    refused: int = 0  # batches the database refused (an error that is not an outage): spooled
    alerts_written: int = 0
    last_batch_s: float = 0.0
    outages: int = 0  # times the writer switched to the spool
    rows_spooled: int = 0  # rows made durable in the spool
    rows_replayed: int = 0  # rows written from the spool to the database
    spool_full_events: int = 0  # times the spool was found full (each one logged as an error)
    spool_peak_bytes: int = 0
    rows_not_durable: int = 0  # rows neither written nor spooled at shutdown (left unacknowledged)
    last_commit_at: float = 0.0  # wall clock of the last commit

    @property
    def duplicates(self) -> int:
        return self.rows_copied - self.rows_inserted


class _SpoolBatch(msgspec.Struct, array_like=True):
    """One spool record: a writer batch, fixes and alerts in arrival order."""

    fixes: list[Fix]
    alerts: list[AlertRow]
    corrections: list[FlagCorrection] = []


_spool_encoder = msgspec.msgpack.Encoder()
_spool_decoder = msgspec.msgpack.Decoder(_SpoolBatch)
_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


@dataclass(slots=True)
class _Entry:
    fixes: Sequence[Fix]
    alerts: Sequence[AlertRow]
    future: asyncio.Future[None]
    corrections: Sequence[FlagCorrection] = ()


class TrackWriter:
    """Batches fixes and alerts into the database, or into the spool while
    the database is away; see the module docstring."""

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        spool_path: str | Path,
        timezone: str = "Asia/Shanghai",
        mileage: MileageRule = DEFAULT_MILEAGE,
        spool: bool = True,
    ) -> None:
        """``spool=False``: never spool; while the database is away fixes wait
        unacknowledged (a scale-out worker, see the policy)."""
        self._settings = settings
        self._timezone = timezone  # alert numbers count per local day
        self._mileage = mileage  # the hourly mileage summary kept with the fixes
        self._policy = WriterPolicy(settings, spool=spool)
        self._spool = Spool(spool_path, max_bytes=int(settings.spool_max_mb * 1024 * 1024))
        self._read_offset = self._spool.start  # first spooled record not yet replayed
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._has_room: asyncio.Event | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._waiting_puts = 0
        self._replay_started = 0.0
        self._replay_rows = 0
        self._full_logged_at = -math.inf
        self._thread_id = 0
        self._session_ops: deque[tuple[SessionOp, asyncio.Future[Any]]] = deque()
        self._session_pid: int | None = None  # the backend that ran session ops: it holds their locks
        self.stats = WriterStats()

    # -- what the metrics read ------------------------------------------------

    @property
    def thread_id(self) -> int:
        """The writer thread's native id (0 before it runs): its CPU in /proc/<pid>/task/<id>."""
        return self._thread_id

    @property
    def queued_rows(self) -> int:
        """Rows in memory, neither committed nor spooled."""
        return self._queued_rows

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    @property
    def spool_bytes(self) -> int:
        """Size of the spool file's records (replayed ones included until truncation)."""
        return self._spool.size

    @property
    def spool_backlog_bytes(self) -> int:
        """Spooled bytes not yet replayed into the database."""
        return self._spool.end - self._read_offset

    @property
    def spool_max_bytes(self) -> int:
        return self._spool.max_bytes

    @property
    def spool_full(self) -> bool:
        return self._policy.spool_full

    @property
    def database_available(self) -> bool:
        """False while the writer spools because the database is away."""
        return self._policy.db_up

    @property
    def flow_control_active(self) -> bool:
        """True while ``put`` holds intake back (queue full, e.g. because the spool is full)."""
        return self._waiting_puts > 0

    # -- the loop side --------------------------------------------------------

    async def put(
        self, fixes: Sequence[Fix], alerts: Sequence[AlertRow] = (), corrections: Sequence[FlagCorrection] = ()
    ) -> asyncio.Future[None]:
        """Queue fixes, the alerts they raised and flag corrections of stored
        fixes; waits while the queue is full. The future resolves once all are
        durable: committed (one transaction) or fsynced in the spool."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not fixes and not alerts and not corrections:
            fut.set_result(None)
            return fut
        if self._policy.closing:
            raise RuntimeError("track writer is closed")
        room = self._room_event()
        if self._queued_rows >= self._settings.queue_max_rows:
            self._waiting_puts += 1
            try:
                while self._queued_rows >= self._settings.queue_max_rows:
                    room.clear()
                    await room.wait()
                    if self._policy.closing:
                        raise RuntimeError("track writer is closed")
            finally:
                self._waiting_puts -= 1
        with self._wake:
            self._queue.append(_Entry(fixes, alerts, fut, corrections))
            self._queued_rows += len(fixes)
            self.stats.rows_in += len(fixes)
            self._wake.notify()
        return fut

    async def on_session(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``op`` on the writer's own session, between two batches (in its
        thread), and commit. A scale-out worker takes its partition leases
        this way, so the session that writes a partition's fixes is the one
        that holds its lease. Once used, the session is kept for good: when it
        ends, the writer ends with :class:`ClusterError` rather than write on
        a new session that holds no lease."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._wake:
            if self._policy.closing:
                raise RuntimeError("track writer is closed")
            self._session_ops.append((op, fut))
            self._wake.notify()
        return await fut

    def _room_event(self) -> asyncio.Event:
        if self._has_room is None:
            self._has_room = asyncio.Event()
            self._has_room.set()
        return self._has_room

    async def close(self) -> None:
        """Stop taking fixes; ``run`` returns once the queue is written or
        spooled, within ``shutdown_timeout_s``."""
        with self._wake:
            self._policy.close(time.monotonic())
            self._wake.notify()
        self._room_event().set()  # a put waiting for room gives up

    async def run(self) -> None:
        """Run the writer thread until it finishes (after ``close``)."""
        self._loop = asyncio.get_running_loop()
        self._room_event()
        done: asyncio.Future[None] = self._loop.create_future()
        thread = threading.Thread(target=self._thread_main, args=(done,), name="track-writer", daemon=True)
        thread.start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            await self.close()
            await asyncio.shield(done)
            raise

    # -- the thread -------------------------------------------------------------

    def _thread_main(self, done: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        self._thread_id = threading.get_native_id()
        error: BaseException | None = None
        try:
            recovered = self._spool.open()
            if recovered.records:
                log.warning(
                    "track writer: %d spooled records (%.1f MB) from a previous run in %s; replaying them",
                    recovered.records, recovered.bytes / 1e6, self._spool.path,
                )  # fmt: skip
            self._work()
        except BaseException as exc:  # noqa: BLE001 - reported to run(): a bug must not pass silently
            error = exc
        finally:
            if self._conn is not None:
                self._conn.close()
            self._spool.close(remove_if_empty=True)
            loop.call_soon_threadsafe(_finish, done, error)

    def _work(self) -> None:
        policy = self._policy
        while True:
            with self._wake:
                ops = list(self._session_ops)
                self._session_ops.clear()
            if ops:
                self._run_session_ops(ops)
            with self._wake:
                if self._session_ops:
                    continue
                # Alerts alone (the tick's: offline, 12319 deadlines) are work too,
                # or they would wait in the queue for the next fix.
                queued = self._queued_rows or len(self._queue)
                action = policy.next(time.monotonic(), queued, self.spool_backlog_bytes)
                if action.kind == "wait":
                    self._wake.wait(None if math.isinf(action.delay_s) else action.delay_s)
                    continue
            if action.kind == "finish":
                return
            if action.kind == "final":
                self._final_spool()
                return
            if action.kind == "probe":
                policy.probed(time.monotonic(), self._probe())
            elif action.kind == "replay":
                self._replay_step()
                if action.then_spool:
                    self._spool_queue(Action("spool"))
            elif action.kind == "spool":
                self._spool_queue(action)
            else:
                self._write_step(action)

    def _pause(self, delay_s: float) -> None:
        if delay_s > 0:
            time.sleep(delay_s)

    def _take(self, max_rows: int) -> list[_Entry]:
        with self._lock:
            entries: list[_Entry] = []
            n = 0
            while self._queue and (not entries or n + len(self._queue[0].fixes) <= max_rows):
                entry = self._queue.popleft()
                entries.append(entry)
                n += len(entry.fixes)
            return entries

    def _put_back(self, entries: list[_Entry]) -> None:
        with self._lock:
            self._queue.extendleft(reversed(entries))

    def _done(self, entries: list[_Entry]) -> None:
        with self._lock:
            self._queued_rows -= sum(len(e.fixes) for e in entries)
            room = self._queued_rows < self._settings.queue_max_rows
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._resolve, [e.future for e in entries], room)

    def _resolve(self, futures: list[asyncio.Future[None]], room: bool) -> None:
        for fut in futures:
            if not fut.done():
                fut.set_result(None)
        if room and self._has_room is not None:
            self._has_room.set()

    # -- the database ---------------------------------------------------------

    def _write_step(self, action: Action) -> None:
        self._pause(action.delay_s)
        entries = self._take(self._batch_size())
        if not entries:
            return
        if self._write_with_retry(_flatten(entries)):
            self._done(entries)
        else:
            self._put_back(entries)  # spooled next, in order

    def _batch_size(self) -> int:
        """Rows for the next batch: ``batch_rows`` while few wait; with a longer
        queue half of it, up to ``batch_max_rows``.

        Larger batches cost PostgreSQL less per row (fewer commits, one plan
        run per statement): a drain of batched messages 27.5 -> 32.8 k fixes/s
        with 25,000 rows instead of 5,000 (tools/bench_e2e.py, 2026-12-04). But
        acknowledgements wait for the commit: when the queue is the broker's
        whole receive window (single-fix messages, 10,000 in flight), one batch
        of all of it leaves nothing to read meanwhile (18.9 -> 16.0 k/s). Half
        of what waits keeps two batches in the window."""
        return max(self._policy.batch_rows, min(self._settings.batch_max_rows, self._queued_rows // 2))

    def _write_with_retry(self, batch: _Batch) -> bool:
        """One attempt, and one more on a fresh connection (a database that
        restarted leaves a dead one behind); False switches to the spool.

        A batch the database refuses (a constraint, a value it cannot take: a
        bug on our side, not an outage) is spooled too, with the error logged:
        the fixes stay durable and acknowledged, the server keeps serving, and
        the spool is replayed once the cause is mended. Stopping the writer
        instead would stop the server, and a restart would fail on the same
        batch again."""
        error = ""
        for _ in (1, 2):
            try:
                self._write(batch)
            except _DB_ERRORS as exc:
                self.stats.failures += 1
                self._drop_connection()
                error = _first_line(exc)
                continue
            except psycopg.Error as exc:
                self.stats.failures += 1
                self.stats.refused += 1
                self._drop_connection()
                error = f"the database refused the batch: {_first_line(exc)}"
                log.error("track writer: %s (%d rows spooled; replayed once it is mended)", error, len(batch.fixes))
                break
            self._policy.written()
            return True
        self._database_down(error)
        return False

    def _database_down(self, why: str) -> None:
        if self._policy.write_failed(time.monotonic()):
            self.stats.outages += 1
            log.warning(
                "track writer: database unavailable (%s); spooling to %s (%.1f of %.0f MB used)",
                why, self._spool.path, self._spool.size / 1e6, self._spool.max_bytes / 1e6,
            )  # fmt: skip
        else:
            log.debug("track writer: database still unavailable (%s)", why)

    def _probe(self) -> bool:
        try:
            self._connect()
        except _DB_ERRORS as exc:
            self.stats.failures += 1
            self._drop_connection()
            self._database_down(_first_line(exc))
            return False
        log.warning(
            "track writer: database back; replaying %.1f MB of spool from %s",
            self.spool_backlog_bytes / 1e6, self._spool.path,
        )  # fmt: skip
        return True

    def _run_session_ops(self, ops: list[tuple[SessionOp, asyncio.Future[Any]]]) -> None:
        assert self._loop is not None
        for op, fut in ops:
            result: Any = None
            error: BaseException | None = None
            try:
                conn = self._connect()
                pid = conn.info.backend_pid
                if self._session_pid is None:
                    self._session_pid = pid
                result = op(conn)
                conn.commit()
            except _DB_ERRORS as exc:
                self._drop_connection()
                error = ClusterError(f"the writer's session ended: {_first_line(exc)}")
            except BaseException as exc:  # noqa: BLE001 - the caller's error, handed back to it
                error = exc
            self._loop.call_soon_threadsafe(_settle, fut, result, error)

    def _connect(self) -> psycopg.Connection[Any]:
        if self._session_pid is not None and (self._conn is None or self._conn.closed):
            # Its locks went with it: never write on a session that does not hold them.
            raise ClusterError("the writer's session holding the partition leases ended")
        if self._conn is None or self._conn.closed:
            s = self._settings
            self._conn = open_writer_connection(
                s.dsn, connect_timeout_s=s.connect_timeout_s, statement_timeout_s=s.write_timeout_s
            )
            # A batch numbers only its own alerts: any stored without a number get theirs here.
            number_left_over_alerts(self._conn, self._timezone)
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*_DB_ERRORS):
                conn.close()

    def _write(self, batch: _Batch) -> None:
        t0 = time.perf_counter()
        inserted = write_batch(
            self._connect(), batch.fixes, batch.alerts, batch.corrections, timezone=self._timezone,
            mileage=self._mileage,
        )  # fmt: skip
        self.stats.alerts_written += len(batch.alerts)
        self.stats.rows_copied += len(batch.fixes)
        self.stats.rows_inserted += inserted
        self.stats.batches += 1
        self.stats.last_batch_s = time.perf_counter() - t0
        self.stats.last_commit_at = time.time()

    # -- the spool ------------------------------------------------------------

    def _spool_queue(self, action: Action) -> None:
        """Move queued batches into the spool, one fsync for all; what does
        not fit stays queued (``put`` then blocks: flow control)."""
        self._pause(action.delay_s)
        moved: list[_Entry] = []
        records: list[bytes] = []
        size = 0
        while True:
            entries = self._take(self._settings.batch_max_rows)
            if not entries:
                break
            b = _flatten(entries)
            record = _spool_encoder.encode(_SpoolBatch(b.fixes, b.alerts, b.corrections))
            if size + Spool.framed_size(record) > self._spool.room:
                self._put_back(entries)
                self._spool_is_full(Spool.framed_size(record))
                break
            moved.extend(entries)
            records.append(record)
            size += Spool.framed_size(record)
        if not records:
            return
        try:
            self._spool.append(records)
            self._spool.sync()
        except (OSError, SpoolError) as exc:
            self._put_back(moved)
            self._spool_is_full(size, str(exc))
            return
        self.stats.rows_spooled += sum(len(e.fixes) for e in moved)
        self.stats.spool_peak_bytes = max(self.stats.spool_peak_bytes, self._spool.size)
        with self._lock:
            empty = not self._queue
        if self._policy.spooled(time.monotonic(), queue_empty=empty):
            log.warning("track writer: spool has room again (%.1f MB used)", self._spool.size / 1e6)
        self._done(moved)

    def _spool_is_full(self, need: int, error: str = "") -> None:
        if self._policy.spool_is_full():
            self.stats.spool_full_events += 1
        now = time.monotonic()
        if now - self._full_logged_at >= 30.0:
            self._full_logged_at = now
            log.error(
                "track writer: SPOOL FULL at %s (%.1f of %.0f MB, %d more bytes needed%s); intake held back, "
                "nothing dropped: %d fixes wait in memory and the broker keeps the rest",
                self._spool.path, self._spool.size / 1e6, self._spool.max_bytes / 1e6, need,
                f"; {error}" if error else "", self._queued_rows,
            )  # fmt: skip

    def _replay_step(self) -> None:
        """Write the next spooled records (up to a batch) to the database;
        truncate the spool once all of it is in."""
        if not self._replay_rows:
            self._replay_started = time.monotonic()
        try:
            batch, offset = self._read_batch(self._read_offset)
        except SpoolError as exc:
            log.error("track writer: %s", exc)
            self._spool.cut_damaged(self._read_offset)
            return
        if offset > self._read_offset:
            if not self._write_with_retry(batch):
                return
            self._read_offset = offset
            self._replay_rows += len(batch.fixes)
            self.stats.rows_replayed += len(batch.fixes)
        if self._read_offset >= self._spool.end:
            self._spool.truncate()
            self._read_offset = self._spool.start
            self._policy.replayed_all()
            took = time.monotonic() - self._replay_started
            log.warning(
                "track writer: spool replayed: %d fixes in %.1f s (%.0f/s); spool truncated",
                self._replay_rows, took, self._replay_rows / max(took, 1e-9),
            )  # fmt: skip
            self._replay_rows = 0

    def _read_batch(self, offset: int) -> tuple[_Batch, int]:
        out = _Batch([], [], [])
        while len(out.fixes) < self._settings.batch_max_rows:
            record = self._spool.read(offset)
            if record is None:
                break
            try:
                batch = _spool_decoder.decode(record[0])
            except msgspec.DecodeError as exc:
                raise SpoolError(f"spool {self._spool.path}: undecodable record at byte {offset}: {exc}") from None
            out.fixes.extend(batch.fixes)
            out.alerts.extend(batch.alerts)
            out.corrections.extend(batch.corrections)
            offset = record[1]
        return out, offset

    def _final_spool(self) -> None:
        """At the shutdown deadline: what is still queued goes to the spool;
        what does not fit stays unacknowledged (the broker redelivers it)."""
        if self._queue and not self._policy.spool_full:
            self._spool_queue(Action("spool"))
        left = self._take(1 << 62)
        if left:
            lost = sum(len(e.fixes) for e in left)
            self.stats.rows_not_durable += lost
            log.error(
                "track writer: shutdown with %d fixes neither written nor spooled; they stay unacknowledged "
                "and the broker delivers them again",
                lost,
            )
            with self._lock:
                self._queued_rows = 0
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_cancel, [e.future for e in left])
        if self.spool_backlog_bytes:
            log.warning(
                "track writer: %.1f MB stay spooled in %s; replayed at the next start",
                self.spool_backlog_bytes / 1e6, self._spool.path,
            )  # fmt: skip


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


def _finish(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _cancel(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        fut.cancel()


@dataclass(slots=True)
class _Batch:
    fixes: list[Fix]
    alerts: list[AlertRow]
    corrections: list[FlagCorrection]


def _flatten(entries: list[_Entry]) -> _Batch:
    batch = _Batch([], [], [])
    for entry in entries:
        batch.fixes.extend(entry.fixes)
        batch.alerts.extend(entry.alerts)
        batch.corrections.extend(entry.corrections)
    return batch


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
