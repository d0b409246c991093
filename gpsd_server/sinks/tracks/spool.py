"""The disk spool: an append-only file of framed records, bounded in size.

The track writer appends here what it cannot write to the database and
replays it, in order, once the database is back. A record counts as durable
once :meth:`Spool.sync` (``fsync``) has returned after its append; the
writer acknowledges a batch only then.

Layout::

    magic  b"GPSDSPL1"
    frame  >I length | >I crc32(payload) | payload      (repeated)

A crash in the middle of an append leaves a torn last frame: :meth:`Spool.open`
keeps every frame whose length and CRC check out and cuts the file after the
last one. Nothing in the torn frame was acknowledged, so the broker still has
it. A bad frame *followed by more data* is not a torn append but damage; the
rest of the file is moved aside to ``<name>.damaged-<time>`` and logged, and
the spool carries on with what was good.

An exclusive ``flock`` keeps two processes from sharing one spool. All methods
do blocking file I/O; the writer calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from gpsd_server.errors import SpoolError

log = logging.getLogger(__name__)

MAGIC = b"GPSDSPL1"
_FRAME = struct.Struct(">II")
MAX_RECORD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Spool.open` found in an existing file."""

    records: int
    bytes: int  # payload + framing of the good records
    dropped_bytes: int  # torn or damaged tail cut off


class Spool:
    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._fd = -1
        self._end = len(MAGIC)  # where the next frame goes
        self.records = 0  # frames in the file (replayed or not)
        self.syncs = 0

    @property
    def size(self) -> int:
        """Bytes of records in the file (without the magic)."""
        return self._end - len(MAGIC)

    @property
    def start(self) -> int:
        """Offset of the first frame."""
        return len(MAGIC)

    @property
    def end(self) -> int:
        return self._end

    @property
    def room(self) -> int:
        """Bytes that can still be appended (framing included)."""
        return max(self.max_bytes - self.size, 0)

    @staticmethod
    def framed_size(payload: bytes) -> int:
        return _FRAME.size + len(payload)

    def open(self) -> Recovery:
        """Create or recover the file and lock it; raises ``SpoolError``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolError(f"spool {self.path} is in use by another process") from None
        self._fd = fd
        try:
            return self._recover()
        except OSError as exc:
            self.close()
            raise SpoolError(f"cannot read spool {self.path}: {exc.strerror or exc}") from None

    def _recover(self) -> Recovery:
        file_size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, len(MAGIC), 0)
        if head != MAGIC:
            if file_size:
                self._move_aside(0, "no spool header")
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, MAGIC, 0)
            self._fsync_all()
            self._end = len(MAGIC)
            return Recovery(0, 0, file_size)
        offset, records = len(MAGIC), 0
        while True:
            frame = self._read_frame(offset, file_size)
            if frame is None:
                break
            offset, records = frame[1], records + 1
        dropped = file_size - offset
        if dropped:
            if dropped > _FRAME.size + MAX_RECORD_BYTES or self._looks_damaged(offset, file_size):
                self._move_aside(offset, "damaged frame")
            else:
                log.warning("spool %s: cut a torn last record (%d bytes, never acknowledged)", self.path, dropped)
            os.ftruncate(self._fd, offset)
            self._fsync_all()
        self._end, self.records = offset, records
        return Recovery(records, offset - len(MAGIC), dropped)

    def _looks_damaged(self, offset: int, file_size: int) -> bool:
        # A torn append ends the file within its own frame; anything beyond
        # the frame's declared length means damage in the middle.
        head = os.pread(self._fd, _FRAME.size, offset)
        if len(head) < _FRAME.size:
            return False
        length: int = _FRAME.unpack(head)[0]
        return offset + _FRAME.size + length < file_size

    def _move_aside(self, offset: int, why: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        with open(aside, "wb") as out:
            pos = offset
            while chunk := os.pread(self._fd, 1 << 20, pos):
                out.write(chunk)
                pos += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        log.error("spool %s: %s at byte %d; the rest of the file is kept in %s", self.path, why, offset, aside)

    def _read_frame(self, offset: int, file_size: int) -> tuple[bytes, int] | None:
        if offset + _FRAME.size > file_size:
            return None
        length, crc = _FRAME.unpack(os.pread(self._fd, _FRAME.size, offset))
        end = offset + _FRAME.size + length
        if length > MAX_RECORD_BYTES or end > file_size:
            return None
        payload = os.pread(self._fd, length, offset + _FRAME.size)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        return payload, end

    def append(self, payloads: list[bytes]) -> None:
        """Write frames after the last one (not yet durable: call ``sync``).
        The caller checks ``fits`` first; this raises ``SpoolError`` if not."""
        total = sum(_FRAME.size + len(p) for p in payloads)
        if self.size + total > self.max_bytes:
            raise SpoolError(f"spool {self.path} full ({self.size} of {self.max_bytes} bytes)")
        buf = bytearray()
        for p in payloads:
            buf += _FRAME.pack(len(p), zlib.crc32(p))
            buf += p
        written = os.pwrite(self._fd, buf, self._end)
        if written != len(buf):  # a short write: treat the tail as torn, cut it
            os.ftruncate(self._fd, self._end)
            raise SpoolError(f"spool {self.path}: short write ({written} of {len(buf)} bytes)")
        self._end += written
        self.records += len(payloads)

    def sync(self) -> None:
        os.fsync(self._fd)
        self.syncs += 1

    def read(self, offset: int) -> tuple[bytes, int] | None:
        """The record at ``offset`` and the offset of the next, or None at
        the end; ``SpoolError`` if the record there is damaged."""
        if offset >= self._end:
            return None
        frame = self._read_frame(offset, self._end)
        if frame is None:
            raise SpoolError(f"spool {self.path}: damaged record at byte {offset}")
        return frame

    def cut_damaged(self, offset: int) -> None:
        """Keep the records before ``offset``; move the rest aside."""
        self._move_aside(offset, "damaged record")
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        self._end = offset

    def truncate(self) -> None:
        """Drop every record (all replayed)."""
        os.ftruncate(self._fd, len(MAGIC))
        os.fsync(self._fd)
        self._end = len(MAGIC)
        self.records = 0

    def close(self, *, remove_if_empty: bool = False) -> None:
        if self._fd < 0:
            return
        if remove_if_empty and self.size == 0:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the lock
        self._fd = -1

    def _fsync_all(self) -> None:
        os.fsync(self._fd)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
