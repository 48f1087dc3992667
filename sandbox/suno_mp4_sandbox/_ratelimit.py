"""The sandbox's rate limit: a sliding window over the arrival times of admitted API calls."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

__all__ = ["SlidingWindow", "retry_after_header"]


class SlidingWindow:
    """At most ``requests`` admitted calls whose arrival lies within the last ``per``
    seconds.

    Only admitted calls enter the window: a client that keeps knocking while limited is
    told to wait, not locked out for good. The clock is monotonic and real, so
    ``Sandbox.advance()`` (which moves the retention clock) does not reset the window.
    """

    def __init__(
        self, requests: int, per: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if requests < 1 or per <= 0:
            raise ValueError(f"rate limit needs requests >= 1 and per > 0, got {requests}/{per}")
        self.requests = requests
        self.per = per
        self._clock = clock
        self._arrivals: collections.deque[float] = collections.deque()

    def admit(self) -> float | None:
        """Record a call and return None, or return the seconds until the window has room."""
        now = self._clock()
        while self._arrivals and self._arrivals[0] <= now - self.per:
            self._arrivals.popleft()
        if len(self._arrivals) < self.requests:
            self._arrivals.append(now)
            return None
        return self._arrivals[0] + self.per - now


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up and at least 1 (0 would invite a burst)."""
    return str(max(1, math.ceil(seconds)))
