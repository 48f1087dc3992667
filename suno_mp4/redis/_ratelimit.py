"""``RedisRateLimit``: one account's rate limit shared by every process, from a Lua script
on the Redis server's clock."""

from __future__ import annotations

import logging
import math
import random
import secrets

import anyio

from .._backoff import Backoff
from .._config import RateLimit
from .._errors import InvalidRequestError, TransportError
from ._common import DEFAULT_NAMESPACE, NOW, Redis, RedisError, key_prefix

__all__ = ["RedisRateLimit"]

logger = logging.getLogger("suno_mp4.redis")


#: KEYS: permits (sorted set token -> ms when it stops counting), pause flag.
#: ARGV: limit, lease ms, token, cool-down ms.
#: Returns 0 with the permit taken, else the ms to wait before asking again.
_ACQUIRE = (
    NOW
    + """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cooldown = tonumber(ARGV[4])
-- No permit of ours counts a day past a lease and a cool-down from now (whatever lease
-- another process has): one that would is junk, and would hold the limit full for good.
local never = now + tonumber(ARGV[2]) + cooldown + 86400000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. never, '+inf')
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  local lease = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  if redis.call('PTTL', KEYS[1]) < lease + cooldown then
    redis.call('PEXPIRE', KEYS[1], lease + cooldown + 1000)
  end
  return 0
end
-- The earliest permit to stop counting; one still in flight counts at least a cool-down
-- after its answer, so nothing frees up sooner than that.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(first[2]) - now
if wait > cooldown then wait = cooldown end
if wait < 1 then wait = 1 end
return wait
"""
)

#: KEYS: permits. ARGV: token, cool-down ms. The permit counts until a cool-down from now.
_RELEASE = (
    NOW
    + """
local cooldown = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + cooldown, ARGV[1])
if redis.call('PTTL', KEYS[1]) < cooldown then
  redis.call('PEXPIRE', KEYS[1], cooldown + 1000)
end
return 0
"""
)

#: KEYS: pause flag. ARGV: ms. Extends the pause, never shortens it.
_PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
"""


#: The longest pause the shared limit keeps (a server's Retry-After, honoured by the client
#: up to ``max_retry_after``): longer ones are cut to it.
_LONGEST_PAUSE_MS = 3_600_000


class RedisRateLimit:
    """A :class:`RateLimit` shared by every process that uses the same Redis and ``name``.

    Same promise as the local limit: a permit counts against ``limit.requests`` from the
    moment it is taken until ``limit.per_seconds`` (+ ``margin``) after the request's
    answer, so a server counting a sliding window never sees too many, whatever the
    network jitter. A permit of a process that died mid-request stops counting after
    ``lease`` seconds. A 429 seen by one process pauses all of them for its Retry-After.
    If Redis cannot be reached for ``unavailable_after`` seconds, the request fails with
    :class:`TransportError` (``sent=False``: nothing reached the API).
    """

    def __init__(
        self,
        redis: Redis,
        limit: RateLimit | int,
        *,
        name: str = "default",
        namespace: str = DEFAULT_NAMESPACE,
        lease: float = 15.0,
        unavailable_after: float = 30.0,
    ) -> None:
        self._limit = limit if isinstance(limit, RateLimit) else RateLimit(limit)
        if lease <= 0:
            raise InvalidRequestError(f"lease must be > 0, got {lease!r}")
        self._redis = redis
        base = f"{key_prefix(namespace)}:rate:{name}"
        self._keys = [base, f"{base}:pause"]
        self._lease_ms = math.ceil(lease * 1000)
        self._cooldown_ms = math.ceil((self._limit.per_seconds + self._limit.margin) * 1000)
        self._unavailable_after = unavailable_after
        #: No answer of our own script asks for a longer wait: one that does reads junk.
        self._longest_wait_ms = max(self._lease_ms, self._cooldown_ms, _LONGEST_PAUSE_MS) + 1000
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._pause = redis.register_script(_PAUSE)
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"<RedisRateLimit {self._keys[0]} {self._limit.requests}/{self._limit.per_seconds}s>"

    @property
    def limit(self) -> RateLimit:
        return self._limit

    async def acquire(self) -> str:
        token = secrets.token_hex(8)
        failing_since: float | None = None
        backoff = Backoff(initial=0.1, maximum=1.0, rng=self._rng)
        while True:
            try:
                # Shielded (for a few seconds at most): a cancellation arriving while the
                # script grants the permit would otherwise leave it counting until its lease.
                with anyio.CancelScope(shield=True) as scope:
                    scope.deadline = anyio.current_time() + 5
                    wait_ms = int(
                        await self._acquire(
                            keys=self._keys,
                            args=[self._limit.requests, self._lease_ms, token, self._cooldown_ms],
                        )
                    )
                if scope.cancelled_caught:
                    raise RedisError("no answer from Redis in 5 s")
                failing_since = None
            except RedisError as exc:
                now = anyio.current_time()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= self._unavailable_after:
                    raise TransportError(
                        f"the shared rate limit in Redis is unreachable: {exc}", sent=False
                    ) from exc
                logger.warning("shared rate limit: Redis error %s; retrying", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            if wait_ms == 0:
                return token
            if wait_ms > self._longest_wait_ms:
                # No permit or pause this class sets lasts that long: junk under its keys
                # (another program, a bug, a person), which would hold every request.
                raise TransportError(
                    f"the shared rate limit in Redis asks to wait {wait_ms / 1000:.0f} s, "
                    f"longer than any permit or pause lasts: check its keys {self._keys}",
                    sent=False,
                )
            # The script's own answer (when a permit frees up), with a little jitter so the
            # processes do not ask in lockstep.
            await anyio.sleep(wait_ms / 1000 * (1 + 0.1 * self._rng.random()))

    async def release(self, token: str) -> None:
        await self._release(keys=self._keys[:1], args=[token, self._cooldown_ms])

    async def pause(self, seconds: float) -> None:
        ms = min(_LONGEST_PAUSE_MS, max(1, math.ceil(min(seconds, 1e9) * 1000)))
        await self._pause(keys=self._keys[1:], args=[ms])
