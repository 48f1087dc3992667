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

from ._common import default_worker_id
from ._ratelimit import RedisRateLimit
from ._relay import RedisCallbackRelay
from ._store import RedisJobStore

__all__ = ["RedisCallbackRelay", "RedisJobStore", "RedisRateLimit", "default_worker_id"]
