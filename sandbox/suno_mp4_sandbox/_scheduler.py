"""One loop that finishes tasks when they fall due: a heap of due times instead of a
sleeping task per video, so ten thousand pending renders cost one timer."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Generic, NoReturn, TypeVar

import anyio

__all__ = ["DueQueue"]

T = TypeVar("T")


class DueQueue(Generic[T]):
    """Items with a due time on ``clock``; ``run`` hands each to ``on_due`` once it is due.

    ``wake()`` makes the loop look again, for when the clock itself jumps forward.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()  # ties keep submission order, items never compare
        self._wakeup = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, item: T) -> None:
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (due, next(self._order), item))
        if due < earliest:
            self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, on_due: Callable[[T], None]) -> NoReturn:
        while True:
            self._wakeup = anyio.Event()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                on_due(heapq.heappop(self._heap)[2])
            delay = self._heap[0][0] - now if self._heap else math.inf
            with anyio.move_on_after(delay):
                await self._wakeup.wait()
