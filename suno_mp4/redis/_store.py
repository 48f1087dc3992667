"""``RedisJobStore``: the job store shared by many workers, with leases (a dead worker's jobs
are claimed by another and finished, never submitted again)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from .._errors import InvalidRequestError, JobStoreError
from .._store import JobRecord, JobState, record_from_json, record_to_json
from .._untrusted import short
from ._common import (
    DEFAULT_NAMESPACE,
    Redis,
    default_worker_id,
    key_prefix,
    store_errors,
    text,
)

__all__ = ["RedisJobStore"]

logger = logging.getLogger("suno_mp4.redis")


#: KEYS: dead worker's lease, its unfinished keys, its keys; ours: unfinished, keys;
#: the worker set. ARGV: dead worker id. Returns the keys moved (none if it is alive).
#: A dead worker's key of another type than a set is junk: read as empty (checked before
#: anything is written: a script that fails half-way is not rolled back), then deleted.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local function members(key)
  if redis.call('TYPE', key)['ok'] == 'set' then return redis.call('SMEMBERS', key) end
  return {}
end
local moved = members(KEYS[2])
local known = members(KEYS[3])
for _, key in ipairs(moved) do redis.call('SADD', KEYS[4], key) end
for _, key in ipairs(known) do redis.call('SADD', KEYS[5], key) end
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
        self._prefix = f"{key_prefix(namespace)}:jobs"
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
        with store_errors("insert"):
            existing = await self._insert(keys=keys, args=[record.key, record_to_json(record)])
        return record_from_json(existing) if existing else None

    async def delete(self, key: str) -> None:
        with store_errors("delete"):
            try:
                record = await self.get(key)
            except JobStoreError:  # junk under the key: deleting it is the way out
                record = None
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
        with store_errors("save"):
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
        with store_errors("get"):
            value = await self._redis.get(self._key("record", key))
        return record_from_json(value) if value is not None else None

    async def find_task(self, task_id: str) -> JobRecord | None:
        with store_errors("find_task"):
            key = await self._redis.get(self._key("task", task_id))
        return await self.get(text(key)) if key is not None else None

    async def _records(self, keys: Sequence[Any]) -> list[JobRecord]:
        out: list[JobRecord] = []
        names = sorted(text(k) for k in keys)
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            values = await self._redis.mget([self._key("record", k) for k in chunk])
            for name, value in zip(chunk, values, strict=True):
                if value is None:
                    continue
                try:
                    out.append(record_from_json(value))
                except JobStoreError as exc:  # one junk record: the others still count
                    logger.warning("job store: skipped the record under %s: %s", short(name), exc)
        out.sort(key=lambda r: r.updated_at)
        return out

    async def unfinished(self) -> Sequence[JobRecord]:
        with store_errors("unfinished"):
            keys = await self._redis.smembers(self._key("unfinished", self._worker_id))
            return [r for r in await self._records(list(keys)) if not r.finished]

    async def all(self) -> Sequence[JobRecord]:
        with store_errors("all"):
            keys = await self._redis.smembers(self._key("keys", self._worker_id))
            return await self._records(list(keys))

    async def renew(self) -> None:
        with store_errors("lease renewal"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key("alive", self._worker_id), "1", px=math.ceil(self._lease * 1000))
                pipe.sadd(self._workers, self._worker_id)
                await pipe.execute()

    async def alive(self, worker_id: str) -> bool:
        """Whether ``worker_id`` holds its lease (a dead worker's does not)."""
        with store_errors("alive"):
            return bool(await self._redis.exists(self._key("alive", worker_id)))

    async def claim(self) -> Sequence[JobRecord]:
        with store_errors("claim"):
            return await self._claim_dead()

    async def _claim_dead(self) -> Sequence[JobRecord]:
        me = self._worker_id
        moved: list[Any] = []
        for raw in await self._redis.smembers(self._workers):
            worker = text(raw)
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
