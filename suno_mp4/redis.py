"""Scale-out on Redis: many worker processes (or machines) share one rate limit, one callback
URL and one job store.

Needs the ``redis`` extra (``pip install 'suno-mp4[redis]'``, redis-py's asyncio client) and
a Redis server (5.0 or newer). Three pieces, each usable alone:

- :class:`RedisRateLimit` — ``Client(rate_limit=RedisRateLimit(redis, RateLimit(20, 1)))``:
  every process takes its permits from one Lua script, so together they never exceed the
  account's limit; a 429 seen by one pauses all.
- :class:`RedisCallbackRelay` — ``Client(relay=RedisCallbackRelay(redis))``: a callback that
  lands on any worker's listener is stored in Redis and published; the worker awaiting that
  task resolves the job. A worker that was disconnected finds the stored result when it
  re-subscribes, and a job registered after its callback arrived finds it at once.
- :class:`RedisJobStore` — ``Client(store=RedisJobStore(redis))``: the :class:`JobStore`
  with leases. Each worker renews its lease; when a worker dies, another claims its
  unfinished jobs and finishes them by polling. Nothing is ever submitted twice.

All keys share one hash tag (``{suno-mp4}`` by default), so the scripts also run on a Redis
Cluster. Timestamps in the scripts come from the Redis server's clock: the machines' clocks
do not need to agree.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import random
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("suno_mp4.redis needs redis-py: pip install 'suno-mp4[redis]'") from exc

from ._callbacks import CallbackSink, parse_callback
from ._config import RateLimit
from ._errors import InvalidRequestError, TransportError
from ._store import JobRecord, JobState, record_from_json, record_to_json

__all__ = ["RedisCallbackRelay", "RedisJobStore", "RedisRateLimit"]

logger = logging.getLogger("suno_mp4")

DEFAULT_NAMESPACE = "suno-mp4"


def _prefix(namespace: str) -> str:
    if not namespace or any(c in namespace for c in "{}"):
        raise InvalidRequestError(f"namespace must be non-empty, without braces: {namespace!r}")
    return "{" + namespace + "}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# The server's clock in milliseconds, inside a script.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: permits (sorted set token -> ms when it stops counting), pause flag.
#: ARGV: limit, lease ms, token, cool-down ms.
#: Returns 0 with the permit taken, else the ms to wait before asking again.
_ACQUIRE = (
    _NOW
    + """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cooldown = tonumber(ARGV[4])
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
    _NOW
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
        base = f"{_prefix(namespace)}:rate:{name}"
        self._keys = [base, f"{base}:pause"]
        self._lease_ms = math.ceil(lease * 1000)
        self._cooldown_ms = math.ceil((self._limit.per_seconds + self._limit.margin) * 1000)
        self._unavailable_after = unavailable_after
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
                wait_ms = 500
            if wait_ms == 0:
                return token
            # A little jitter so the processes do not ask in lockstep.
            await anyio.sleep(wait_ms / 1000 * (1 + 0.1 * self._rng.random()))

    async def release(self, token: str) -> None:
        await self._release(keys=self._keys[:1], args=[token, self._cooldown_ms])

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=self._keys[1:], args=[max(1, math.ceil(seconds * 1000))])


class RedisCallbackRelay:
    """Hands each callback to the process awaiting its job, through Redis.

    ``publish`` stores the callback under its task id (for ``ttl`` seconds) and publishes
    it, in one transaction; the listener answers the API only after that, so a callback is
    never lost between processes. Every client subscribes; when it (re)subscribes it looks
    up the stored results of all its pending jobs, and each job it registers is looked up
    once, so a result published while it was away or before the job existed is found.
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
    ) -> None:
        self._redis = redis
        prefix = _prefix(namespace)
        self._channel = f"{prefix}:callbacks"
        self._result_prefix = f"{prefix}:callback:"
        self._ttl = max(1, math.ceil(ttl))
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
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._result_prefix + task_id, text, ex=self._ttl)
            pipe.publish(self._channel, text)
            await pipe.execute()
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
            payload = parse_callback(json.loads(raw))
        except ValueError:
            payload = None
        if payload is None:
            logger.warning("relay: ignored a malformed message")
            return
        self.stats["received"] += 1
        if sink.deliver(payload, buffer=False):
            self.stats["resolved"] += 1

    async def _subscription(self, *, task_status: TaskStatus[None]) -> None:
        started = False
        delay = 0.1
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
                delay = 0.1
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
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

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
        delay = 0.1
        while True:
            if not self._pending:
                self._pending_ready = anyio.Event()
                await self._pending_ready.wait()
            ids = list(itertools.islice(self._pending, self._batch))
            try:
                values = await self._redis.mget([self._result_prefix + i for i in ids])
            except RedisError as exc:
                logger.warning("relay: stored-result lookup failed (%s); retrying", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self.stats["lookups"] += len(ids)
            for task_id, value in zip(ids, values, strict=True):
                self._pending.pop(task_id, None)
                if value is not None:
                    self._deliver(value)


#: KEYS: dead worker's lease, its unfinished keys, its keys; ours: unfinished, keys;
#: the worker set. ARGV: dead worker id. Returns the keys moved (none if it is alive).
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local moved = redis.call('SMEMBERS', KEYS[2])
for _, key in ipairs(moved) do redis.call('SADD', KEYS[4], key) end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('SADD', KEYS[5], key) end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[6], ARGV[1])
return moved
"""


#: KEYS: the record, our keys, our unfinished keys. ARGV: the record's key, its JSON.
#: Saves the record unless one that is not "rejected" holds the key; returns that one.
_INSERT = """
local existing = redis.call('GET', KEYS[1])
if existing and cjson.decode(existing)['state'] ~= 'rejected' then return existing end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return false
"""


@contextlib.contextmanager
def _store_errors(what: str) -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        # sent=False: a store write comes before the request it records.
        raise TransportError(f"job store in Redis: {what} failed: {exc}", sent=False) from exc


def default_worker_id() -> str:
    """``host-pid-random``: unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisJobStore:
    """The :class:`JobStore` on Redis, shared by many workers, with leases.

    Each record is saved by (and belongs to) one worker: ``unfinished`` and ``all`` list this
    worker's records, ``get`` and ``find_task`` see everyone's. The client renews this
    worker's lease (``lease`` seconds) every third of it; a worker whose lease ended is dead,
    and the first client to call ``claim`` takes over its unfinished records atomically, then
    polls those jobs to the end. A record being submitted when its worker died becomes
    ``unknown`` — never re-sent. Give a restarted worker its old ``worker_id`` to resume its
    own jobs at once (otherwise another worker claims them when the lease ends).
    Finished records are kept ``finished_ttl`` seconds (14 days, as long as the video URL
    lives; ``None`` keeps them). Writes are as durable as the Redis server is configured to
    be (AOF ``appendfsync``). Redis errors surface as :class:`TransportError`.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        worker_id: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        lease: float = 30.0,
        finished_ttl: float | None = 14 * 86400,
    ) -> None:
        if lease <= 0:
            raise InvalidRequestError(f"lease must be > 0, got {lease!r}")
        if finished_ttl is not None and finished_ttl <= 0:
            raise InvalidRequestError(f"finished_ttl must be > 0 or None, got {finished_ttl!r}")
        self._redis = redis
        self._worker_id = worker_id or default_worker_id()
        self._finished_ttl = None if finished_ttl is None else math.ceil(finished_ttl)
        self._prefix = f"{_prefix(namespace)}:jobs"
        self._lease = lease
        self._claim = redis.register_script(_CLAIM)
        self._insert = redis.register_script(_INSERT)

    def __repr__(self) -> str:
        return f"<RedisJobStore {self._prefix} worker {self._worker_id}>"

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def lease_seconds(self) -> float:
        return self._lease

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    @property
    def _workers(self) -> str:
        return f"{self._prefix}:workers"

    async def insert(self, record: JobRecord) -> JobRecord | None:
        """Atomic across every worker: of many inserting one key, exactly one saves."""
        me = self._worker_id
        keys = [self._key("record", record.key), self._key("keys", me)]
        keys.append(self._key("unfinished", me))
        with _store_errors("insert"):
            existing = await self._insert(keys=keys, args=[record.key, record_to_json(record)])
        return record_from_json(existing) if existing else None

    async def delete(self, key: str) -> None:
        with _store_errors("delete"):
            record = await self.get(key)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key("record", key))
                if record is not None and record.task_id:
                    pipe.delete(self._key("task", record.task_id))
                pipe.srem(self._key("keys", self._worker_id), key)
                pipe.srem(self._key("unfinished", self._worker_id), key)
                await pipe.execute()

    async def by_state(self, *states: JobState) -> Sequence[JobRecord]:
        """This worker's records in any of ``states`` (all without arguments)."""
        records = await self.all()
        return [r for r in records if not states or r.state in states]

    async def save(self, record: JobRecord) -> None:
        me = self._worker_id
        ttl = self._finished_ttl if record.finished else None
        with _store_errors("save"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key("record", record.key), record_to_json(record), ex=ttl)
                if record.task_id:
                    pipe.set(self._key("task", record.task_id), record.key, ex=ttl)
                pipe.sadd(self._key("keys", me), record.key)
                if record.finished or record.state is JobState.REJECTED:
                    pipe.srem(self._key("unfinished", me), record.key)
                else:
                    pipe.sadd(self._key("unfinished", me), record.key)
                await pipe.execute()

    async def get(self, key: str) -> JobRecord | None:
        with _store_errors("get"):
            value = await self._redis.get(self._key("record", key))
        return record_from_json(value) if value is not None else None

    async def find_task(self, task_id: str) -> JobRecord | None:
        with _store_errors("find_task"):
            key = await self._redis.get(self._key("task", task_id))
        return await self.get(_text(key)) if key is not None else None

    async def _records(self, keys: Sequence[Any]) -> list[JobRecord]:
        out: list[JobRecord] = []
        names = sorted(_text(k) for k in keys)
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            values = await self._redis.mget([self._key("record", k) for k in chunk])
            out.extend(record_from_json(v) for v in values if v is not None)
        out.sort(key=lambda r: r.updated_at)
        return out

    async def unfinished(self) -> Sequence[JobRecord]:
        with _store_errors("unfinished"):
            keys = await self._redis.smembers(self._key("unfinished", self._worker_id))
            return [r for r in await self._records(list(keys)) if not r.finished]

    async def all(self) -> Sequence[JobRecord]:
        with _store_errors("all"):
            keys = await self._redis.smembers(self._key("keys", self._worker_id))
            return await self._records(list(keys))

    async def renew(self) -> None:
        with _store_errors("lease renewal"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key("alive", self._worker_id), "1", px=math.ceil(self._lease * 1000))
                pipe.sadd(self._workers, self._worker_id)
                await pipe.execute()

    async def alive(self, worker_id: str) -> bool:
        """Whether ``worker_id`` holds its lease (a dead worker's does not)."""
        with _store_errors("alive"):
            return bool(await self._redis.exists(self._key("alive", worker_id)))

    async def claim(self) -> Sequence[JobRecord]:
        with _store_errors("claim"):
            return await self._claim_dead()

    async def _claim_dead(self) -> Sequence[JobRecord]:
        me = self._worker_id
        moved: list[Any] = []
        for raw in await self._redis.smembers(self._workers):
            worker = _text(raw)
            if worker == me:
                continue
            keys = [
                self._key("alive", worker),
                self._key("unfinished", worker),
                self._key("keys", worker),
                self._key("unfinished", me),
                self._key("keys", me),
                self._workers,
            ]
            taken = await self._claim(keys=keys, args=[worker])
            if taken:
                logger.info("claimed %d job(s) of dead worker %s", len(taken), worker)
            moved.extend(taken)
        return [r for r in await self._records(moved) if not r.finished]

    async def aclose(self) -> None:
        """Nothing to release: the Redis connection is yours, and the lease ends by itself."""
