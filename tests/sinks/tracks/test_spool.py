"""The spool file: framing, fsync, recovery after a crash, bounds, locking."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from gpsd_server.errors import SpoolError
from gpsd_server.sinks.tracks.spool import MAGIC, Spool


def records(spool: Spool) -> list[bytes]:
    out, offset = [], spool.start
    while (rec := spool.read(offset)) is not None:
        out.append(rec[0])
        offset = rec[1]
    return out


def test_append_sync_read_truncate(tmp_path: Path) -> None:
    s = Spool(tmp_path / "a" / "x.spool", max_bytes=1 << 20)
    assert s.open().records == 0
    s.append([b"one", b"two"])
    s.append([b"three"])
    s.sync()
    assert records(s) == [b"one", b"two", b"three"]
    assert s.size == 3 * 8 + 11
    s.truncate()
    assert records(s) == [] and s.size == 0
    s.close(remove_if_empty=True)
    assert not s.path.exists()


def test_reopen_keeps_records(tmp_path: Path) -> None:
    s = Spool(tmp_path / "x.spool", max_bytes=1 << 20)
    s.open()
    s.append([b"a" * 100, b"b" * 50])
    s.sync()
    s.close()
    s2 = Spool(tmp_path / "x.spool", max_bytes=1 << 20)
    rec = s2.open()
    assert (rec.records, rec.dropped_bytes) == (2, 0)
    assert records(s2) == [b"a" * 100, b"b" * 50]


@pytest.mark.parametrize("cut", [1, 5, 8, 20])
def test_torn_last_record_is_cut(tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x.spool"
    s = Spool(path, max_bytes=1 << 20)
    s.open()
    s.append([b"good" * 10, b"torn" * 10])
    s.sync()
    s.close()
    with path.open("r+b") as f:  # a crash in the middle of the second append
        f.truncate(len(MAGIC) + 8 + 40 + cut)
    s2 = Spool(path, max_bytes=1 << 20)
    with caplog.at_level(logging.WARNING):
        rec = s2.open()
    assert rec.records == 1 and rec.dropped_bytes == cut
    assert records(s2) == [b"good" * 10]
    s2.append([b"next"])
    assert records(s2) == [b"good" * 10, b"next"]
    assert "torn" in caplog.text


def test_damage_in_the_middle_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x.spool"
    s = Spool(path, max_bytes=1 << 20)
    s.open()
    s.append([b"first", b"second", b"third"])
    s.sync()
    s.close()
    with path.open("r+b") as f:  # flip a byte inside "second"
        f.seek(len(MAGIC) + 8 + 5 + 8 + 2)
        f.write(b"X")
    s2 = Spool(path, max_bytes=1 << 20)
    with caplog.at_level(logging.ERROR):
        rec = s2.open()
    assert rec.records == 1 and records(s2) == [b"first"]
    aside = list(tmp_path.glob("x.spool.damaged-*"))
    assert len(aside) == 1 and b"third" in aside[0].read_bytes()
    assert "damaged" in caplog.text


def test_foreign_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    path.write_bytes(b"not a spool at all")
    s = Spool(path, max_bytes=1 << 20)
    assert s.open().records == 0
    assert path.read_bytes() == MAGIC
    assert list(tmp_path.glob("x.spool.damaged-*"))


def test_bounded(tmp_path: Path) -> None:
    s = Spool(tmp_path / "x.spool", max_bytes=100)
    s.open()
    assert s.room == 100
    s.append([b"x" * 50])
    assert s.room == 100 - 58
    with pytest.raises(SpoolError, match="full"):
        s.append([b"y" * 50])
    assert records(s) == [b"x" * 50]


def test_one_process_per_spool(tmp_path: Path) -> None:
    s = Spool(tmp_path / "x.spool", max_bytes=100)
    s.open()
    other = Spool(tmp_path / "x.spool", max_bytes=100)
    with pytest.raises(SpoolError, match="in use"):
        other.open()
    s.close()
    other.open()
    other.close()


def test_unwritable_folder_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match=str(blocker)):
        Spool(blocker / "x.spool", max_bytes=100).open()
    assert os.path.exists(blocker)
