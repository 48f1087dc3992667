"""The client-wide request limiter: submits before polls, the configured rate limit (local
or shared between processes), and the adaptive brake on 429s when none is configured."""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

from ._clock import loop_time
from ._config import RateLimit
from ._errors import InvalidRequestError

__all__ = ["PRIORITY_POLL", "PRIORITY_SUBMIT", "Permit", "RequestLimiter", "SharedRateLimit"]

logger = logging.getLogger("suno_mp4.transport")


@runtime_checkable
class SharedRateLimit(Protocol):
    """A :class:`RateLimit` shared by several processes (``suno_mp4.redis.RedisRateLimit``).

    Pass it as ``Client(rate_limit=...)``. Each request takes a permit with ``acquire``
    (waiting as long as needed) and hands it back with ``release`` once its answer arrived;
    the permit counts against the limit until ``limit.per_seconds`` after that.
    """

    @property
    def limit(self) -> RateLimit: ...

    async def acquire(self) -> str:
        """Wait for a permit; returns its token."""
        ...

    async def release(self, token: str) -> None:
        """The request that used ``token`` got its answer (or failed)."""
        ...

    async def pause(self, seconds: float) -> None:
        """A 429 arrived: no process sends anything for ``seconds``."""
        ...


PRIORITY_SUBMIT = 0
PRIORITY_POLL = 1


class _Waiter:
    __slots__ = ("event", "key", "priority")

    def __init__(self, priority: int, seq: int) -> None:
        self.priority = priority
        self.key = (priority, seq)
        self.event = anyio.Event()

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class Permit:
    """One request's right to go; ``release()`` once its answer (or failure) arrived."""

    __slots__ = ("_limiter", "_released", "sent_at", "token")

    def __init__(self, limiter: RequestLimiter, sent_at: float) -> None:
        self._limiter = limiter
        self._released = False
        self.sent_at = sent_at
        #: The shared limit's token, if any.
        self.token: str | None = None

    def release(self, *, ok: bool = True) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self, ok=ok)


class RequestLimiter:
    """Every API request of a client passes here: one queue, submits before polls.

    Three brakes: the configured :class:`RateLimit` (permits with a cool-down), a pause
    that a 429 sets for the whole client, and — when no limit was configured — a rate it
    learns from 429s (multiplicative decrease, gentle increase), so 1,000 concurrent
    submits against a limited server do not turn into a storm of 429s.
    """

    #: Learned-rate growth per second without a 429 (compounding): quick to recover after
    #: a short 429 storm, still a few seconds between probes of a real limit.
    _GROWTH = 1.5
    #: Past this learned rate the brake is released altogether.
    _RELEASE = 1000.0

    def __init__(self, limit: RateLimit | SharedRateLimit | None = None) -> None:
        self.shared: SharedRateLimit | None = None
        if limit is not None and not isinstance(limit, RateLimit):
            if not isinstance(limit, SharedRateLimit):
                raise InvalidRequestError(
                    f"rate_limit must be a RateLimit or a shared limit, got {limit!r}"
                )
            # The process keeps the same limit locally: it can never use more than all.
            self.shared, limit = limit, limit.limit
        self.limit = limit
        # Shared-limit work that must not block the caller (releases, pauses), done by run().
        self._outbox: deque[Callable[[], Awaitable[None]]] = deque()
        self._outbox_ready: anyio.Event | None = None
        self._heap: list[_Waiter] = []
        self._seq = itertools.count()
        self._free: deque[float] = deque()
        if limit is not None:
            self._free.extend([-math.inf] * limit.requests)
        self._paused_until = -math.inf
        self._learned_rate: float | None = None  # requests per second, adaptive mode only
        self._probing = False  # a 429 was seen: the next one (after the pause) teaches a rate
        self._last_throttle = -math.inf
        self._next_slot = -math.inf
        self._rate_changed_at = -math.inf
        self._successes: deque[float] = deque()
        self.throttled = 0  # 429 answers seen

    def _ready_at(self) -> float:
        t = self._paused_until
        if self.limit is not None:
            if not self._free:
                return math.inf
            t = max(t, self._free[0])
        if self._learned_rate is not None:
            t = max(t, self._next_slot)
        return t

    def _take(self, now: float) -> Permit:
        if self.limit is not None:
            self._free.popleft()
        if self._learned_rate is not None:
            self._grow(now)
            self._next_slot = max(now, self._next_slot) + 1 / self._learned_rate
        return Permit(self, now)

    def _grow(self, now: float) -> None:
        assert self._learned_rate is not None
        elapsed = now - self._rate_changed_at
        if elapsed > 1:
            self._learned_rate *= self._GROWTH ** min(elapsed, 20)
            self._rate_changed_at = now
            if self._learned_rate > self._RELEASE:
                self._learned_rate = None

    def _wake_head(self) -> None:
        if self._heap:
            self._heap[0].event.set()

    def _free_permit(self) -> Permit | None:
        """A local permit at once if one is free and nobody is queued (the common case)."""
        if self._heap:
            return None
        now = loop_time()
        if self.limit is None and self._learned_rate is None:  # no brake on: only a pause
            return Permit(self, now) if self._paused_until <= now else None
        return self._take(now) if self._ready_at() <= now else None

    def try_acquire(self) -> Permit | None:
        """A permit at once when one is free with nobody queued and no shared limit to ask
        (the common case, without a coroutine); else ``None``: then ``await acquire()``."""
        return None if self.shared is not None else self._free_permit()

    async def acquire(self, priority: int = PRIORITY_POLL) -> Permit:
        """Wait for this request's turn. Cancellation leaves the queue consistent."""
        permit = self._free_permit() or await self._queue(priority)
        if self.shared is not None:
            try:
                permit.token = await self.shared.acquire()
            except BaseException:
                permit.release(ok=False)
                raise
        return permit

    async def _queue(self, priority: int) -> Permit:
        me = _Waiter(priority, next(self._seq))
        heapq.heappush(self._heap, me)
        self._wake_head()
        try:
            while True:
                if self._heap[0] is me:
                    now = loop_time()
                    ready = self._ready_at()
                    if ready <= now:
                        heapq.heappop(self._heap)
                        permit = self._take(now)
                        self._wake_head()
                        return permit
                    with anyio.move_on_after(ready - now):
                        await me.event.wait()
                else:
                    await me.event.wait()
                me.event = anyio.Event()
        except BaseException:
            if me in self._heap:
                self._heap.remove(me)
                heapq.heapify(self._heap)
                self._wake_head()
            raise

    def _release(self, permit: Permit, *, ok: bool) -> None:
        now = loop_time()
        if self.limit is not None:
            self._free.append(now + self.limit.per_seconds + self.limit.margin)
        if ok:
            successes = self._successes
            successes.append(now)
            while successes[0] < now - 1:
                successes.popleft()
        if permit.token is not None and self.shared is not None:
            self._post(functools.partial(self.shared.release, permit.token))
        self._wake_head()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hands releases and pauses to the shared limit (the client runs this task).

        A release that cannot reach it is not fatal: the shared limit takes the permit back
        by itself when its lease ends.
        """
        task_status.started()
        try:
            while True:
                await self.flush()
                self._outbox_ready = anyio.Event()
                await self._outbox_ready.wait()
        finally:
            self._outbox_ready = None

    async def flush(self) -> None:
        """Hand what is queued to the shared limit now (the client does it when closing,
        so other processes need not wait for the leases of our last permits to end)."""
        while self._outbox:
            call = self._outbox.popleft()
            try:
                await call()
            except Exception as exc:  # the lease covers a lost release
                logger.warning("shared rate limit: %s failed: %s", call, exc)

    def _post(self, call: Callable[[], Awaitable[None]]) -> None:
        self._outbox.append(call)
        if self._outbox_ready is not None:
            self._outbox_ready.set()

    def throttle(self, permit: Permit | None, retry_after: float | None, backoff: float) -> None:
        """A 429 arrived: pause every new request client-wide for ``Retry-After`` (or the
        backoff). If 429s go on for requests sent after such a pause ended, the server's
        budget is below our pace: from then on a learned rate spaces requests out."""
        self.throttled += 1
        now = loop_time()
        sent_at = permit.sent_at if permit is not None else now
        pause = retry_after if retry_after is not None else backoff
        if now - self._last_throttle > 60 and self._learned_rate is None:
            self._probing = False  # a minute of calm: start from a plain pause again
        self._last_throttle = now
        # React once per congestion event: only to a 429 for a request sent after the last
        # reaction (the others were already in flight when we slowed down).
        if self.limit is None and sent_at >= self._rate_changed_at:
            if self._learned_rate is not None:
                self._learned_rate = max(0.2, self._learned_rate * 0.5)
            elif self._probing:
                # A pause alone did not help: pace at what the server let through.
                self._learned_rate = max(2.0, float(len(self._successes)))
            self._probing = True
            self._rate_changed_at = now + pause
        self._paused_until = max(self._paused_until, now + pause)
        if self.shared is not None:
            self._post(functools.partial(self.shared.pause, pause))
        self._wake_head()
