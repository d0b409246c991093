"""The track writer: a bounded queue in front of batched binary COPY, with a
disk spool for when the database is away.

``put(fixes, alerts)`` returns a future that resolves once they are durable,
so a caller can acknowledge its source only then. Durable means committed,
or, while the database is unreachable, fsynced in the spool
(:mod:`gpsd_server.store.spool`). Ingest therefore keeps going through an
outage: live positions and alerts still reach the websockets.

A batch is written in one idempotent transaction (:mod:`gpsd_server.store.batch`),
so a batch written twice, after an unclear commit, a crash or a replay,
stores nothing twice.

A failed write is tried once more on a fresh connection, then the writer
switches to the spool: queued batches are appended (one fsync per
``spool_fsync_interval_s``) and the database is probed with jittered
backoff. Once it answers, the spool is replayed in order, ahead of anything
queued since, and truncated; a spool left by a previous run is replayed at
start. A full spool is logged as an error and counted, and nothing is
dropped: batches stay queued, and when the queue is full ``put`` waits, so
the broker holds the rest (flow control). ``close`` drains the queue into
the database or the spool within ``shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from gpsd_server.errors import SpoolError
from gpsd_server.model import Fix
from gpsd_server.store.batch import STAGE_SQL, AlertRow, write_batch
from gpsd_server.store.spool import Spool

__all__ = ["AlertRow", "TrackWriter", "WriterStats"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    rows_in: int = 0  # rows handed to put()
    rows_copied: int = 0  # rows committed through COPY (duplicates included)
    rows_inserted: int = 0  # new rows in fixes
    batches: int = 0
    failures: int = 0  # failed database attempts (each one spooled or retried)
    alerts_written: int = 0
    last_batch_s: float = 0.0
    outages: int = 0  # times the writer switched to the spool
    rows_spooled: int = 0  # rows made durable in the spool
    rows_replayed: int = 0  # rows written from the spool to the database
    spool_full_events: int = 0  # times the spool was found full (each one logged as an error)
    spool_peak_bytes: int = 0
    rows_not_durable: int = 0  # rows neither written nor spooled at shutdown (left unacknowledged)

    @property
    def duplicates(self) -> int:
        return self.rows_copied - self.rows_inserted


class _SpoolBatch(msgspec.Struct, array_like=True):
    """One spool record: a writer batch, fixes and alerts in arrival order."""

    fixes: list[Fix]
    alerts: list[AlertRow]


_spool_encoder = msgspec.msgpack.Encoder()
_spool_decoder = msgspec.msgpack.Decoder(_SpoolBatch)
_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
_Entry = tuple[Sequence[Fix], Sequence[AlertRow], asyncio.Future[None]]
DEFAULT_SPOOL_PATH = ".state/spool/fixes.spool"


class TrackWriter:
    """Batches fixes and alerts into the database, or into the spool while
    the database is away; see the module docstring."""

    def __init__(
        self,
        *,
        dsn: str,
        batch_max_rows: int = 5000,
        flush_interval_s: float = 0.005,
        queue_max_rows: int = 200000,
        retry_min_s: float = 0.5,
        retry_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        spool_path: str | os.PathLike[str] = DEFAULT_SPOOL_PATH,
        spool_max_bytes: int = 1024 * 1024 * 1024,
        spool_fsync_interval_s: float = 0.05,
        write_timeout_s: float = 30.0,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._batch_max = batch_max_rows
        self._flush_interval = flush_interval_s
        self._queue_max = queue_max_rows
        self._retry = (retry_min_s, retry_max_s)
        self._connect_timeout = connect_timeout_s
        self._write_timeout = write_timeout_s
        self._shutdown_timeout = shutdown_timeout_s
        self._fsync_interval = spool_fsync_interval_s
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._has_data = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._closing = False
        self._deadline = float("inf")
        # A blocking connection, used from a worker thread one operation at a
        # time: ingest cycles hold the event loop for up to a tenth of a second,
        # and a batch written through an asyncio connection needed about 17
        # turns of the loop (round trips, COPY flushes), so under load each
        # write waited for many cycles and the broker's window for its
        # acknowledgements. In a thread it waits for the database only.
        self._conn: psycopg.Connection[Any] | None = None
        self._abandoned: set[asyncio.Task[None]] = set()
        self._spool = Spool(spool_path, max_bytes=spool_max_bytes)
        self._read_offset = self._spool.start  # first record not yet replayed
        self._replay_started = 0.0
        self._replay_rows = 0
        self._db_up = True
        self._next_probe = 0.0
        self._probe_delay = retry_min_s
        self._last_sync = 0.0
        self._full_logged_at = -float("inf")
        self._waiting_puts = 0
        self.spool_full = False
        self.stats = WriterStats()

    # -- what the metrics read ------------------------------------------------

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
    def database_available(self) -> bool:
        """False while the writer spools because the database is away."""
        return self._db_up

    @property
    def flow_control_active(self) -> bool:
        """True while ``put`` holds intake back (queue full, e.g. because the spool is full)."""
        return self._waiting_puts > 0

    # -- the API --------------------------------------------------------------

    async def put(self, fixes: Sequence[Fix], alerts: Sequence[AlertRow] = ()) -> asyncio.Future[None]:
        """Queue fixes and the alerts they raised; waits while the queue is
        full. The future resolves once both are durable: committed (one
        transaction) or fsynced in the spool."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not fixes and not alerts:
            fut.set_result(None)
            return fut
        if self._closing:
            raise RuntimeError("track writer is closed")
        if self._queued_rows >= self._queue_max:
            self._waiting_puts += 1
            try:
                while self._queued_rows >= self._queue_max:
                    self._has_room.clear()
                    await self._has_room.wait()
                    if self._closing:
                        raise RuntimeError("track writer is closed")
            finally:
                self._waiting_puts -= 1
        self._queue.append((fixes, alerts, fut))
        self._queued_rows += len(fixes)
        self.stats.rows_in += len(fixes)
        self._has_data.set()
        return fut

    async def close(self) -> None:
        """Stop taking fixes; ``run`` returns once the queue is written or
        spooled, within ``shutdown_timeout_s``."""
        if not self._closing:
            self._closing = True
            self._deadline = time.monotonic() + self._shutdown_timeout
        self._has_data.set()
        self._has_room.set()  # a put waiting for room gives up

    async def run(self) -> None:
        recovered = await asyncio.to_thread(self._spool.open)
        if recovered.records:
            log.warning(
                "track writer: %d spooled records (%.1f MB) from a previous run in %s; replaying them",
                recovered.records, recovered.bytes / 1e6, self._spool.path,
            )  # fmt: skip
        try:
            await self._loop()
        finally:
            if self._conn is not None:
                await asyncio.to_thread(self._conn.close)
            await asyncio.to_thread(self._spool.close, remove_if_empty=True)

    # -- the loop -------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            if self._closing and time.monotonic() >= self._deadline:
                await self._final_spool()
                return
            if self._db_up and self.spool_backlog_bytes:
                await self._replay_step()
                if self._queued_rows >= self._queue_max // 2:
                    await self._spool_queue()  # keep intake flowing during a long replay
                continue
            if not self._db_up:
                if self._queue and not self.spool_full:
                    await self._spool_queue()
                elif self._closing:
                    if not self.spool_backlog_bytes or not await self._probe():
                        await self._final_spool()
                        return
                    continue
                if time.monotonic() >= self._next_probe:
                    await self._probe()
                elif not self._queue or self.spool_full:
                    await self._wait_for_data(self._next_probe - time.monotonic())
                continue
            if not self._queue:
                if self._closing:
                    return
                await self._wait_for_data(None)
                continue
            if self._queued_rows < self._batch_max and not self._closing:
                # Group commit: wait briefly for more rows. Under load the
                # previous write's duration does the batching; the wait must
                # stay short because acknowledgements (and so the broker's
                # in-flight window) wait for the commit.
                await asyncio.sleep(self._flush_interval)
            entries = self._take(self._batch_max)
            rows, alerts = _flatten(entries)
            if await self._write_with_retry(rows, alerts):
                self._done(entries)
            else:
                self._queue.extendleft(reversed(entries))  # spooled next, in order

    async def _wait_for_data(self, wait_s: float | None) -> None:
        self._has_data.clear()
        if wait_s is None:
            await self._has_data.wait()
        elif wait_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._has_data.wait()

    def _take(self, max_rows: int) -> list[_Entry]:
        entries: list[_Entry] = []
        n = 0
        while self._queue and (not entries or n + len(self._queue[0][0]) <= max_rows):
            entry = self._queue.popleft()
            entries.append(entry)
            n += len(entry[0])
        return entries

    def _done(self, entries: list[_Entry]) -> None:
        self._queued_rows -= sum(len(e[0]) for e in entries)
        if self._queued_rows < self._queue_max:
            self._has_room.set()
        for _, _, fut in entries:
            if not fut.done():
                fut.set_result(None)

    # -- the database ---------------------------------------------------------

    def _op_timeout(self) -> float:
        if self._closing:
            return min(self._write_timeout, self._deadline - time.monotonic())
        return self._write_timeout

    async def _write_with_retry(self, rows: list[Fix], alerts: list[AlertRow]) -> bool:
        """One attempt, and one more on a fresh connection (a database that
        restarted leaves a dead one behind); False switches to the spool."""
        error: str | None = None
        for _ in (1, 2):
            error = await self._bounded(self._write(rows, alerts))
            if error is None:
                return True
            if error == "timeout":
                break
        self._db_down(error or "unknown")
        return False

    async def _bounded(self, op: Coroutine[Any, Any, None]) -> str | None:
        """Run a database operation within the operation timeout; None when
        it succeeded, else why not. A hung operation is abandoned (it is
        idempotent should it complete later) and its connection dropped."""
        timeout = self._op_timeout()
        if timeout <= 0:
            op.close()
            return "timeout"
        task = asyncio.create_task(op, name="track-writer-db")
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
            if not task.done():
                self._abandoned.add(task)
                task.add_done_callback(self._abandoned.discard)
            self._conn = None
            self.stats.failures += 1
            return "timeout"
        exc = task.exception()
        if exc is None:
            return None
        if not isinstance(exc, _DB_ERRORS):
            raise exc
        self.stats.failures += 1
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)
        return _first_line(exc)

    def _db_down(self, why: str) -> None:
        if self._db_up:
            self.stats.outages += 1
            log.warning(
                "track writer: database unavailable (%s); spooling to %s (%.1f of %.0f MB used)",
                why, self._spool.path, self._spool.size / 1e6, self._spool.max_bytes / 1e6,
            )  # fmt: skip
        else:
            log.debug("track writer: database still unavailable (%s)", why)
        self._db_up = False
        self._next_probe = time.monotonic() + random.uniform(0.5, 1.5) * self._probe_delay
        self._probe_delay = min(self._probe_delay * 2, self._retry[1])

    async def _probe(self) -> bool:
        error = await self._bounded(self._connect_only())
        if error is not None:
            self._db_down(error)
            return False
        self._db_up = True
        self._probe_delay = self._retry[0]
        log.warning(
            "track writer: database back; replaying %.1f MB of spool from %s",
            self.spool_backlog_bytes / 1e6, self._spool.path,
        )  # fmt: skip
        return True

    async def _connect_only(self) -> None:
        await self._connect()

    async def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = None
            self._conn = await asyncio.to_thread(self._open)
        return self._conn

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self._dsn, connect_timeout=max(1, int(self._connect_timeout)), application_name="gpsd-writer"
        )
        try:
            conn.execute(STAGE_SQL)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    async def _write(self, rows: list[Fix], alerts: list[AlertRow]) -> None:
        t0 = time.perf_counter()
        conn = await self._connect()
        inserted = await asyncio.to_thread(write_batch, conn, rows, alerts)
        self.stats.alerts_written += len(alerts)
        self.stats.rows_copied += len(rows)
        self.stats.rows_inserted += inserted
        self.stats.batches += 1
        self.stats.last_batch_s = time.perf_counter() - t0

    # -- the spool ------------------------------------------------------------

    async def _spool_queue(self) -> None:
        """Move queued batches into the spool, one fsync for all; what does
        not fit stays queued (``put`` then blocks: flow control)."""
        if not self._closing:
            wait = self._last_sync + self._fsync_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # group commit: one fsync per interval
        moved: list[_Entry] = []
        records: list[bytes] = []
        size = 0
        while self._queue:
            entries = self._take(self._batch_max)
            rows, alerts = _flatten(entries)
            record = _spool_encoder.encode(_SpoolBatch(rows, alerts))
            if size + Spool.framed_size(record) > self._spool.room:
                self._queue.extendleft(reversed(entries))
                self._spool_is_full(Spool.framed_size(record))
                break
            moved.extend(entries)
            records.append(record)
            size += Spool.framed_size(record)
        if not records:
            return
        try:
            await asyncio.to_thread(self._append_and_sync, records)
        except (OSError, SpoolError) as exc:
            self._queue.extendleft(reversed(moved))
            self._spool_is_full(size, str(exc))
            return
        self._last_sync = time.monotonic()
        n = sum(len(e[0]) for e in moved)
        self.stats.rows_spooled += n
        self.stats.spool_peak_bytes = max(self.stats.spool_peak_bytes, self._spool.size)
        if self.spool_full and not self._queue:
            self.spool_full = False
            log.warning("track writer: spool has room again (%.1f MB used)", self._spool.size / 1e6)
        self._done(moved)

    def _append_and_sync(self, records: list[bytes]) -> None:
        self._spool.append(records)
        self._spool.sync()

    def _spool_is_full(self, need: int, error: str = "") -> None:
        if not self.spool_full:
            self.stats.spool_full_events += 1
        self.spool_full = True
        now = time.monotonic()
        if now - self._full_logged_at >= 30.0:
            self._full_logged_at = now
            log.error(
                "track writer: SPOOL FULL at %s (%.1f of %.0f MB, %d more bytes needed%s); intake held back, "
                "nothing dropped: %d fixes wait in memory and the broker keeps the rest",
                self._spool.path, self._spool.size / 1e6, self._spool.max_bytes / 1e6, need,
                f"; {error}" if error else "", self._queued_rows,
            )  # fmt: skip

    async def _replay_step(self) -> None:
        """Write the next spooled records (up to a batch) to the database;
        truncate the spool once all of it is in."""
        if not self._replay_rows:
            self._replay_started = time.monotonic()
        try:
            rows, alerts, offset = await asyncio.to_thread(self._read_batch, self._read_offset)
        except SpoolError as exc:
            log.error("track writer: %s", exc)
            await asyncio.to_thread(self._spool.cut_damaged, self._read_offset)
            return
        if offset > self._read_offset:
            if await self._write_with_retry(rows, alerts):
                self._read_offset = offset
                self._replay_rows += len(rows)
                self.stats.rows_replayed += len(rows)
            else:
                return
        if self._read_offset >= self._spool.end:
            await asyncio.to_thread(self._spool.truncate)
            self._read_offset = self._spool.start
            self.spool_full = False
            took = time.monotonic() - self._replay_started
            log.warning(
                "track writer: spool replayed: %d fixes in %.1f s (%.0f/s); spool truncated",
                self._replay_rows, took, self._replay_rows / max(took, 1e-9),
            )  # fmt: skip
            self._replay_rows = 0

    def _read_batch(self, offset: int) -> tuple[list[Fix], list[AlertRow], int]:
        rows: list[Fix] = []
        alerts: list[AlertRow] = []
        while len(rows) < self._batch_max:
            record = self._spool.read(offset)
            if record is None:
                break
            try:
                batch = _spool_decoder.decode(record[0])
            except msgspec.DecodeError as exc:
                raise SpoolError(f"spool {self._spool.path}: undecodable record at byte {offset}: {exc}") from None
            rows.extend(batch.fixes)
            alerts.extend(batch.alerts)
            offset = record[1]
        return rows, alerts, offset

    async def _final_spool(self) -> None:
        """At the shutdown deadline: what is still queued goes to the spool;
        what does not fit stays unacknowledged (the broker redelivers it)."""
        if self._queue:
            await self._spool_queue()
        if self._queue:
            lost = sum(len(e[0]) for e in self._queue)
            self.stats.rows_not_durable += lost
            log.error(
                "track writer: shutdown with %d fixes neither written nor spooled; they stay unacknowledged "
                "and the broker delivers them again",
                lost,
            )
            while self._queue:
                self._queue.popleft()[2].cancel()
            self._queued_rows = 0
        if self.spool_backlog_bytes:
            log.warning(
                "track writer: %.1f MB stay spooled in %s; replayed at the next start",
                self.spool_backlog_bytes / 1e6, self._spool.path,
            )  # fmt: skip


def _flatten(entries: list[_Entry]) -> tuple[list[Fix], list[AlertRow]]:
    rows: list[Fix] = []
    alerts: list[AlertRow] = []
    for fixes, more_alerts, _ in entries:
        rows.extend(fixes)
        alerts.extend(more_alerts)
    return rows, alerts


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
