"""``RedisCallbackRelay``: a callback that lands on any worker's listener reaches the worker
awaiting the job (stored, then published)."""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._arguments import check_number
from .._backoff import Backoff
from .._callbacks import CallbackError, CallbackSink, parse_callback_body
from .._errors import TransportError
from .._models import settles_job
from ._common import DEFAULT_NAMESPACE, NOW, Redis, RedisError, key_prefix

__all__ = ["RedisCallbackRelay"]

logger = logging.getLogger("suno_mp4.redis")


# Store a callback (if it settles its job and none is stored yet), keep the index of stored
# results within ``max_stored`` (the oldest, and the expired, leave it), publish it. The
# results' keys share the namespace's hash tag with the index (one cluster slot).
_PUBLISH = (
    NOW
    + """
local text, ttl, final = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local most, channel = tonumber(ARGV[4]), ARGV[5]
if final == '1' and redis.call('SET', KEYS[1], text, 'EX', ttl, 'NX') then
    if redis.call('TYPE', KEYS[2]).ok ~= 'zset' then redis.call('DEL', KEYS[2]) end
    -- Scores in microseconds' worth of order: the millisecond, then a counter within it
    -- (several callbacks stored in one millisecond keep their order).
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', (now - ttl * 1000) * 1000)
    -- Room made before the new one is indexed: it is never the one that goes.
    local over = redis.call('ZCARD', KEYS[2]) - most + 1
    if over > 0 then
        local oldest = redis.call('ZPOPMIN', KEYS[2], over)
        for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
    end
    local seq = redis.call('INCR', KEYS[3]) % 1000
    redis.call('ZADD', KEYS[2], now * 1000 + seq, KEYS[1])
end
return redis.call('PUBLISH', channel, text)
"""
)


class RedisCallbackRelay:
    """Hands each callback to the process awaiting its job, through Redis.

    ``publish`` stores the callback under its task id (for ``ttl`` seconds; the first one
    that settles the job: as for a job registered here, later ones do not replace it; at
    most ``max_stored`` results, the oldest dropped first, since anyone holding the
    callback URL can make task ids up) and publishes it, in one script; the listener
    answers the API only after that, so a callback is never lost between processes. What
    is stored is what resolving the job reads (code, a message cut to 500 characters, task
    id, video URL): a few KB at most, whatever the body.
    Every client subscribes; when it (re)subscribes it looks up the stored results of all
    its pending jobs, and each job it registers is looked up once, so a result published
    while it was away or before the job existed is found.
    Every process receives every callback (a broadcast): fine for tens of workers. A
    connection that dies silently (no reset) is noticed only by Redis health checks: create
    the client with ``health_check_interval=`` (and ``socket_keepalive=True``); meanwhile
    the safety poll still resolves the jobs.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = 3 * 86400,
        batch: int = 500,
        max_stored: int = 100_000,
    ) -> None:
        check_number(ttl, "ttl", minimum=0, exclusive=True, finite=True)
        check_number(max_stored, "max_stored", minimum=1, integer=True)
        self._redis = redis
        prefix = key_prefix(namespace)
        self._channel = f"{prefix}:callbacks"
        self._result_prefix = f"{prefix}:callback:"
        #: The stored results by when they were stored: the oldest go past ``max_stored``.
        self._index = f"{prefix}:callbacks-stored"
        self._ttl = max(1, math.ceil(ttl))
        self._max_stored = max_stored
        self._publish = redis.register_script(_PUBLISH)
        self._batch = batch
        self._sink: CallbackSink | None = None
        self._pending: dict[str, None] = {}  # task ids to look up, in order
        self._pending_ready: anyio.Event | None = None
        #: Statistics: published here, received from Redis, jobs resolved by them,
        #: subscriptions lost and made again, stored results looked up.
        self.stats = {
            "published": 0,
            "received": 0,
            "resolved": 0,
            "reconnects": 0,
            "lookups": 0,
        }

    def __repr__(self) -> str:
        return f"<RedisCallbackRelay {self._channel}>"

    async def publish(self, task_id: str, body: Mapping[str, Any]) -> None:
        text = json.dumps(body)
        data = body.get("data")
        url = data.get("video_url") if isinstance(data, Mapping) else None
        # Stored if it settles the job (a success without a URL settles nothing) and is the
        # first that does (as for a job registered here: a late failure or a replay must
        # not replace a stored success); published in any case.
        final = settles_job(body.get("code"), url)
        await self._publish(
            keys=[self._result_prefix + task_id, self._index, self._index + ":seq"],
            args=[text, self._ttl, 1 if final else 0, self._max_stored, self._channel],
        )
        self.stats["published"] += 1

    def watch(self, task_id: str) -> None:
        self._pending[task_id] = None
        if self._pending_ready is not None:
            self._pending_ready.set()

    async def run(
        self, sink: CallbackSink, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Subscribe (raising :class:`TransportError` if Redis cannot be reached now), then
        deliver callbacks to ``sink`` until cancelled, re-subscribing after a failure."""
        if self._sink is not None:
            raise RuntimeError("this RedisCallbackRelay already serves a client; make one each")
        self._sink = sink
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._subscription)
                tg.start_soon(self._lookups)
                task_status.started()
        finally:
            self._sink = None

    def _deliver(self, raw: Any) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            payload, _ = parse_callback_body(raw)  # the one parser of callbacks
        except CallbackError:
            logger.warning("relay: ignored a malformed message")
            return
        self.stats["received"] += 1
        if sink.deliver(payload, buffer=False):
            self.stats["resolved"] += 1

    async def _subscription(self, *, task_status: TaskStatus[None]) -> None:
        started = False
        backoff = Backoff(initial=0.1, maximum=5.0)
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            connection: Any = None
            try:
                await pubsub.subscribe(self._channel)
                # redis-py may also reconnect (and re-subscribe) by itself: hear about it.
                connection = pubsub.connection  # typed as None in redis-py
                if connection is not None:
                    connection.register_connect_callback(self._reconnected)
                self._rewatch()
                if not started:
                    started = True
                    task_status.started()
                backoff.reset()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._deliver(message["data"])
            except RedisError as exc:
                if not started:
                    raise TransportError(f"cannot subscribe to Redis: {exc}", sent=False) from exc
                self.stats["reconnects"] += 1
                logger.warning("relay: lost the Redis subscription (%s); re-subscribing", exc)
            finally:
                connection = pubsub.connection
                if connection is not None:
                    connection.deregister_connect_callback(self._reconnected)
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await backoff.sleep()

    def _rewatch(self) -> None:
        """What was published while we were not subscribed is in the stored results."""
        if self._sink is not None:
            for task_id in self._sink.pending():
                self.watch(task_id)

    async def _reconnected(self, connection: object) -> None:
        self.stats["reconnects"] += 1
        logger.info("relay: the Redis subscription reconnected")
        self._rewatch()

    async def _lookups(self) -> None:
        """Look up stored results for watched task ids, ``batch`` per round trip."""
        backoff = Backoff(initial=0.1, maximum=5.0)
        while True:
            if not self._pending:
                self._pending_ready = anyio.Event()
                await self._pending_ready.wait()
            ids = list(itertools.islice(self._pending, self._batch))
            try:
                values = await self._redis.mget([self._result_prefix + i for i in ids])
            except RedisError as exc:
                logger.warning("relay: stored-result lookup failed (%s); retrying", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            self.stats["lookups"] += len(ids)
            for task_id, value in zip(ids, values, strict=True):
                self._pending.pop(task_id, None)
                if value is not None:
                    self._deliver(value)
