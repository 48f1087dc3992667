"""The one backoff schedule of every retry loop: exponential, capped, with full jitter
(uniform in [0, the exponential delay]) so that many clients retrying at once spread out."""

from __future__ import annotations

import random

import anyio

__all__ = ["Backoff", "full_jitter"]


def full_jitter(attempt: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """The delay before retry number ``attempt`` (0 = the first retry)."""
    return rng.uniform(0, min(maximum, initial * 2 ** min(attempt, 60)))


class Backoff:
    """Delays for one retry loop: ``await backoff.sleep()`` after each failure,
    ``backoff.reset()`` after a success. ``jitter=False`` gives the plain exponential
    (a loop of one process that nobody else retries alongside)."""

    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._jitter = jitter
        self._rng = rng or random.Random()
        #: Failures since the last success.
        self.attempt = 0

    def next_delay(self) -> float:
        if self._jitter:
            delay = full_jitter(
                self.attempt, initial=self._initial, maximum=self._maximum, rng=self._rng
            )
        else:
            delay = min(self._maximum, self._initial * 2 ** min(self.attempt, 60))
        self.attempt += 1
        return delay

    async def sleep(self) -> float:
        """Wait the next delay; returns it."""
        delay = self.next_delay()
        await anyio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
