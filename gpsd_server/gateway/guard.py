"""What keeps the gateway up whatever terminals (or attackers) do: a
connection budget well under the process's descriptor limit, counted per
peer address, and logging that writes one line per reason per interval
instead of one per event (no traceback storms)."""

from __future__ import annotations

import logging
import math
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from gpsd_server.settings import Jt808Settings

log = logging.getLogger(__name__)


def raise_descriptor_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never past the hard
    limit); return the limits in force. Python starts with the soft limit
    the shell gave it, often 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
    return soft, hard


def connection_budget(settings: Jt808Settings, soft_limit: int) -> int:
    """Total terminal connections allowed: ``max_connections``, but never more
    than the descriptors left after ``fd_reserve`` and a quarter of the limit
    (HTTP, websockets, the database pool, the broker, the spool and logs
    need theirs whatever the terminals do)."""
    if soft_limit == resource.RLIM_INFINITY:
        return settings.max_connections
    reserve = max(settings.fd_reserve, soft_limit // 4)
    return max(1, min(settings.max_connections, soft_limit - reserve))


@dataclass
class AddressBook:
    """Open connections per peer address, bounded by ``per_address``."""

    per_address: int
    open: Counter[str] = field(default_factory=Counter)

    def admit(self, address: str) -> bool:
        if self.open[address] >= self.per_address:
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


@dataclass
class _Pending:
    count: int = 0
    samples: list[str] = field(default_factory=list)
    detail: str = ""
    logged_at: float = -math.inf
    level: int = logging.NOTSET


class EventLog:
    """Logs the first event of a reason at once, then at most one line per
    reason per ``interval_s`` with the count and a few phones or peers."""

    SAMPLES = 5

    def __init__(self, logger: logging.Logger, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self.interval_s, self._clock = logger, interval_s, clock
        self._pending: dict[str, _Pending] = {}

    def event(self, reason: str, who: str = "", detail: str = "", level: int = logging.WARNING) -> None:
        entry = self._pending.setdefault(reason, _Pending())
        entry.count += 1
        entry.level = max(entry.level, level)
        if who and who not in entry.samples and len(entry.samples) < self.SAMPLES:
            entry.samples.append(who)
        if detail:
            entry.detail = detail
        now = self._clock()
        if now - entry.logged_at >= self.interval_s:
            self._emit(reason, entry, now)

    def flush(self) -> None:
        """Write what is still counted (call it every interval)."""
        now = self._clock()
        for reason, entry in self._pending.items():
            if entry.count and now - entry.logged_at >= self.interval_s:
                self._emit(reason, entry, now)

    def _emit(self, reason: str, entry: _Pending, now: float) -> None:
        span = "" if entry.logged_at == -math.inf else f" in the last {now - entry.logged_at:.0f} s"
        who = f" ({', '.join(entry.samples)}{', ...' if entry.count > len(entry.samples) else ''})"
        self._log.log(
            entry.level, "jt808 %s: %d%s%s%s", reason, entry.count, span, who if entry.samples else "",
            f": {entry.detail}" if entry.detail else "",
        )  # fmt: skip
        entry.count, entry.samples, entry.detail, entry.logged_at = 0, [], "", now
        entry.level = logging.NOTSET
