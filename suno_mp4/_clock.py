"""The event loop's clock, read directly: the SDK runs on asyncio only, and
``anyio.current_time()`` first works out which async library runs, on every call (a few
percent of the SDK's CPU on the request path)."""

from __future__ import annotations

from asyncio import get_running_loop

__all__ = ["loop_time"]


def loop_time() -> float:
    """Seconds on the running loop's monotonic clock (what ``anyio.current_time()`` gives
    under asyncio)."""
    return get_running_loop().time()
