"""Jittered exponential backoff, the one retry policy of every driver.

The delay doubles from ``min_s`` to ``max_s``; each wait is drawn uniformly
from [0.5, 1.5) times the current delay, so many servers (or many terminals'
gateways) that lost the same broker do not come back in lock step.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s, self.max_s = min_s, max_s
        self._delay = min_s
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The wait before the next attempt; the one after will be longer."""
        wait = self._delay * self._rng.uniform(0.5, 1.5)
        self._delay = min(self._delay * 2, self.max_s)
        return wait

    def reset(self) -> None:
        """After a success: the next failure waits ``min_s`` again."""
        self._delay = self.min_s
