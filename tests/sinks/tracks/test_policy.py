"""The track writer's decisions, without a database or a file: feed situations, assert actions."""

from __future__ import annotations

import math
import random

from gpsd_server.backoff import Backoff
from gpsd_server.settings import DatabaseSettings
from gpsd_server.sinks.tracks.policy import WriterPolicy

SETTINGS = DatabaseSettings(
    batch_max_rows=100,
    queue_max_rows=1000,
    flush_interval_ms=5,
    spool_fsync_ms=50,
    retry_min_s=1.0,
    retry_max_s=8.0,
    shutdown_timeout_s=10.0,
)


def policy() -> WriterPolicy:
    return WriterPolicy(SETTINGS, Backoff(1.0, 8.0, rng=random.Random(1)))


def test_database_up_writes_a_partial_batch_after_the_group_commit_wait_and_a_full_one_at_once() -> None:
    p = policy()
    assert p.next(0.0, 0, 0).kind == "wait" and math.isinf(p.next(0.0, 0, 0).delay_s)
    partial = p.next(0.0, 10, 0)
    assert (partial.kind, partial.delay_s) == ("write", 0.005)
    full = p.next(0.0, 100, 0)
    assert (full.kind, full.delay_s) == ("write", 0.0)


def test_an_outage_spools_with_one_fsync_per_interval_and_probes_with_backoff() -> None:
    p = policy()
    assert p.write_failed(10.0) is True and p.outages == 1
    assert p.write_failed(10.0) is False and p.outages == 1  # still the same outage
    first = p.next(10.0, 50, 0)
    assert (first.kind, first.delay_s) == ("spool", 0.0)
    p.spooled(10.0, queue_empty=True)
    again = p.next(10.01, 20, 0)
    assert again.kind == "spool" and math.isclose(again.delay_s, 0.04)  # group commit: one fsync per 50 ms
    waiting = p.next(10.1, 0, 4096)
    assert waiting.kind == "wait" and 0 < waiting.delay_s <= 8 * 1.5
    assert p.next(10.0 + 20.0, 0, 4096).kind == "probe"
    p.probed(30.0, ok=False)
    assert p.next(30.0, 0, 4096).kind == "wait"


def test_when_the_database_is_back_the_spool_is_replayed_first_and_the_queue_spooled_if_it_fills() -> None:
    p = policy()
    p.write_failed(0.0)
    p.probed(5.0, ok=True)
    assert p.db_up
    replay = p.next(5.0, 10, 4096)
    assert (replay.kind, replay.then_spool) == ("replay", False)
    assert p.next(5.0, 600, 4096).then_spool is True  # more than half the queue: keep intake flowing
    p.replayed_all()
    assert p.next(5.0, 600, 0).kind == "write"


def test_a_full_spool_holds_intake_and_is_reported_once() -> None:
    p = policy()
    p.write_failed(0.0)
    assert p.spool_is_full() is True and p.spool_is_full() is False
    assert p.next(0.1, 500, 0).kind == "wait"  # nothing more fits: the queue stays, put() blocks
    assert p.spooled(0.2, queue_empty=False) is False and p.spool_full
    assert p.spooled(0.3, queue_empty=True) is True and not p.spool_full


def test_closing_drains_then_finishes_or_spools_at_the_deadline() -> None:
    p = policy()
    p.close(100.0)
    assert p.next(100.0, 10, 0).kind == "write" and p.next(100.0, 10, 0).delay_s == 0.0  # no group-commit wait
    assert p.next(100.0, 0, 0).kind == "finish"
    assert p.next(110.0, 10, 0).kind == "final"  # the deadline: what is left goes to the spool


def test_closing_while_the_database_is_away_spools_everything_and_asks_once_more() -> None:
    p = policy()
    p.write_failed(0.0)
    p.close(1.0)
    spool = p.next(1.0, 10, 0)
    assert (spool.kind, spool.delay_s) == ("spool", 0.0)
    assert p.next(1.0, 0, 4096).kind == "probe"  # a backlog: is the database back to take it?
    p.probed(1.0, ok=False)
    assert p.next(1.0, 0, 4096).kind == "final"
    assert p.next(1.0, 0, 0).kind == "final"


def test_without_a_spool_an_outage_keeps_the_queue_and_probes_until_the_database_is_back() -> None:
    """A scale-out worker: nothing becomes durable on its own disk, so nothing is acknowledged."""
    p = WriterPolicy(SETTINGS, Backoff(1.0, 8.0, rng=random.Random(1)), spool=False)
    assert p.next(0.0, 10, 0).kind == "write"
    p.write_failed(10.0)
    for t in (10.0, 10.5, 12.0):
        assert p.next(t, 50, 0).kind in ("wait", "probe")  # never "spool"
    p.probed(30.0, ok=True)
    assert p.next(30.0, 50, 0).kind == "write"
    p.replayed_all()
    p.write_failed(40.0)
    assert p.next(40.0, 50, 0).kind != "spool"
    p.close(50.0)
    assert p.next(61.0, 50, 0).kind == "final"  # the deadline: what is queued stays unacknowledged
