"""The SDK's clock: the event loop's, read directly. asyncio's loop clock is
``time.monotonic()`` (uvloop's is the same clock, read once per loop turn), and
``anyio.current_time()`` first works out which async library runs, on every call; even
``asyncio.get_running_loop().time()`` is two calls more, a few times per request."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

__all__ = ["loop_time"]

#: Seconds on the event loop's monotonic clock (what ``anyio.current_time()`` gives under
#: asyncio). The SDK only compares these with each other, or passes their differences on.
loop_time: Callable[[], float] = monotonic
