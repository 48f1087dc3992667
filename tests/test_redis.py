"""suno_mp4.redis against a real redis-server on 127.0.0.1 (started here, on a free port)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import anyio
import pytest
from redis.asyncio import Redis
from suno_mp4_sandbox import RedisServer, Sandbox, redis_server

from suno_mp4 import (
    CallbackListener,
    Client,
    InvalidRequestError,
    PollPolicy,
    RateLimit,
    TransportError,
)
from suno_mp4._store import SUBMITTED, SUBMITTING, UNKNOWN, JobRecord, record_to_json
from suno_mp4.redis import RedisCallbackRelay, RedisJobStore, RedisRateLimit

from .conftest import FAST_POLL, FAST_RETRY

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis_proc() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def redis(redis_proc: RedisServer) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_proc.url)
    await r.flushall()
    try:
        yield r
    finally:
        await r.aclose()


def _client(sb: Sandbox, **kwargs: object) -> Client:
    return Client(
        sb.api_key,
        base_url=sb.base_url,
        poll=kwargs.pop("poll", FAST_POLL),  # type: ignore[arg-type]
        retry=FAST_RETRY,
        **kwargs,  # type: ignore[arg-type]
    )


# The shared rate limit.


async def test_three_clients_sharing_a_limit_never_trip_the_servers_window(redis: Redis) -> None:
    async with Sandbox(render_time=0.05, rate_limit=(10, 1.0), seed=3) as sb:
        tracks = [sb.add_track() for _ in range(36)]
        clients = [
            _client(
                sb,
                rate_limit=RedisRateLimit(redis, RateLimit(10, 1.0), name="acct"),
                poll=PollPolicy(initial_delay=60),  # submits only, while we measure
            )
            for _ in range(3)
        ]
        async with clients[0] as a, clients[1] as b, clients[2] as c:
            start = anyio.current_time()
            jobs = []

            async def submit(client: Client, track: tuple[str, str]) -> None:
                jobs.append(await client.create_video(*track))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for i, track in enumerate(tracks):
                        tg.start_soon(submit, (a, b, c)[i % 3], track)
            elapsed = anyio.current_time() - start
        assert len(jobs) == 36
        assert sum(sb.stats.submits.values()) == 36
        # The limit held across the three clients: the sandbox counts arrivals in a sliding
        # 1-s window and answers 429 past 10, so no 429 is no second with more than 10 (a
        # server-side count, not the test's clock). How long the 36 took is a figure for
        # benchmarks.scaleout.
        assert sb.stats.answers[429] == 0
        print(f"\n36 submits through a shared 10/s limit: {elapsed:.2f} s")


async def test_a_pause_from_one_process_holds_back_the_others(redis: Redis) -> None:
    one = RedisRateLimit(redis, 100, name="p")
    other = RedisRateLimit(redis, 100, name="p")
    await one.pause(0.4)
    start = anyio.current_time()
    with anyio.fail_after(5):
        token = await other.acquire()
    assert anyio.current_time() - start >= 0.35
    await other.release(token)


async def test_a_permit_never_released_stops_counting_after_its_lease(redis: Redis) -> None:
    limit = RedisRateLimit(redis, RateLimit(1, 0.1), name="lease", lease=0.3)
    await limit.acquire()  # the process "dies" holding it
    start = anyio.current_time()
    with anyio.fail_after(5):
        await limit.acquire()
    assert anyio.current_time() - start >= 0.25


async def test_an_unreachable_redis_fails_the_request_with_a_typed_error() -> None:
    with redis_server() as server:
        r = Redis.from_url(server.url)
        limit = RedisRateLimit(r, 5, name="down", unavailable_after=0.5)
        server.kill()
        with anyio.fail_after(10), pytest.raises(TransportError) as info:
            await limit.acquire()
        assert info.value.sent is False
        await r.aclose()


# Callback fan-out.


async def test_a_callback_landing_on_another_workers_listener_resolves_here(
    redis: Redis,
) -> None:
    secret = secrets.token_urlsafe(32)
    async with Sandbox(render_time=0.1, seed=4) as sb:
        tracks = [sb.add_track() for _ in range(20)]
        front = CallbackListener(secret=secret)
        async with _client(sb, callbacks=front, relay=RedisCallbackRelay(redis)):
            base = front.callback_url.rsplit("/", 1)[0].removesuffix(front.path)
            # Worker 1 hands out the same URL: the balancer always picks worker 0.
            behind = CallbackListener(public_url=base, secret=secret)
            relay1 = RedisCallbackRelay(redis)
            async with _client(sb, callbacks=behind, relay=relay1) as worker1:
                assert behind.callback_url == front.callback_url
                jobs = [await worker1.create_video(*t) for t in tracks]
                with anyio.fail_after(20):
                    videos = [await job for job in jobs]
        assert [v.task_id for v in videos] == [j.task_id for j in jobs]
        assert {j.resolved_by for j in jobs} == {"callback"}
        assert sum(j.polls for j in jobs) == 0
        assert front.answers == {200: 20}
        assert behind.answers == {}
        assert relay1.stats["resolved"] == 20


async def test_a_result_stored_before_the_job_registered_is_found(redis: Redis) -> None:
    async with Sandbox(render_time=0.05, seed=5) as sb:
        task, audio = sb.add_track()
        relay = RedisCallbackRelay(redis)
        no_poll = FAST_POLL.__class__(fallback_interval=300, max_wait=60)
        async with _client(sb, relay=relay, poll=no_poll) as c:
            job = await c.create_video(task, audio)
            video_task = job.task_id
        # Another process received the callback while nobody here listened.
        publisher = RedisCallbackRelay(redis)
        body = {
            "code": 200,
            "msg": "ok",
            "data": {"task_id": video_task, "video_url": "http://127.0.0.1:1/v.mp4"},
        }
        await publisher.publish(video_task, body)
        async with _client(sb, relay=RedisCallbackRelay(redis), poll=no_poll) as c:
            job = c.job(video_task, expect_callback=True)
            with anyio.fail_after(5):
                video = await job
        assert video.video_url == "http://127.0.0.1:1/v.mp4"
        assert job.resolved_by == "callback"
        assert job.polls == 0


def _callback(task_id: str, code: int = 200, url: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {"task_id": task_id}
    if url is not None:
        data["video_url"] = url
    return {"code": code, "msg": "ok" if code == 200 else "render failed", "data": data}


async def test_the_relay_keeps_the_first_final_callback_of_a_task(redis: Redis) -> None:
    # As for a job registered here: a late failure, an empty duplicate or a replay with
    # another URL does not replace the stored result (kept for days, for every worker).
    publisher = RedisCallbackRelay(redis)
    await publisher.publish("mp4_t", _callback("mp4_t"))  # settles nothing: not stored
    await publisher.publish("mp4_t", _callback("mp4_t", url="http://127.0.0.1:1/first.mp4"))
    await publisher.publish("mp4_t", _callback("mp4_t", code=501))
    await publisher.publish("mp4_t", _callback("mp4_t"))
    await publisher.publish("mp4_t", _callback("mp4_t", url="http://127.0.0.1:1/again.mp4"))
    async with Sandbox(render_time=0.05) as sb:
        no_poll = FAST_POLL.__class__(fallback_interval=300, max_wait=60)
        async with _client(sb, relay=RedisCallbackRelay(redis), poll=no_poll) as c:
            job = c.job("mp4_t", expect_callback=True)
            with anyio.fail_after(5):
                video = await job
    assert video.video_url == "http://127.0.0.1:1/first.mp4" and job.polls == 0


async def test_the_relay_stores_at_most_max_stored_results_the_oldest_dropped(
    redis: Redis,
) -> None:
    # Anyone holding the callback URL can make task ids up: the store is bounded in count,
    # not only in time.
    relay = RedisCallbackRelay(redis, max_stored=5)
    await redis.set("{suno-mp4}:callbacks-stored", "junk")  # a wrong type is replaced
    for i in range(12):
        await relay.publish(f"mp4_{i}", _callback(f"mp4_{i}", url=f"http://127.0.0.1:1/{i}.mp4"))
    stored = sorted(k.decode() for k in await redis.keys("{suno-mp4}:callback:*"))
    assert stored == sorted(f"{{suno-mp4}}:callback:mp4_{i}" for i in range(7, 12))
    assert await redis.zcard("{suno-mp4}:callbacks-stored") == 5
    # Full, its entries as new as the next one: the one just stored is not what goes.
    index = "{suno-mp4}:callbacks-stored"
    await redis.delete(index)
    await redis.zadd(index, {f"{{suno-mp4}}:callback:zz{i}": 9e15 for i in range(5)})
    await relay.publish("aa-new", _callback("aa-new", url="http://127.0.0.1:1/new.mp4"))
    assert await redis.get("{suno-mp4}:callback:aa-new") is not None
    assert await redis.zscore(index, "{suno-mp4}:callback:aa-new") is not None
    for bad in ({"max_stored": 0}, {"ttl": float("inf")}, {"ttl": 0}):
        with pytest.raises(InvalidRequestError):
            RedisCallbackRelay(redis, **bad)  # type: ignore[arg-type]


async def test_a_job_detached_while_its_callback_was_relayed_resolves_when_awaited_again(
    redis: Redis,
) -> None:
    from suno_mp4 import JobTimeoutError

    no_poll = PollPolicy(initial_delay=300, fallback_interval=300, max_wait=600)
    async with Sandbox(render_time=0.3) as sb:
        listener = CallbackListener()
        relay = RedisCallbackRelay(redis)
        async with _client(sb, callbacks=listener, relay=relay, poll=no_poll) as c:
            job = await c.create_video(*sb.add_track())
            with pytest.raises(JobTimeoutError):
                await job.wait(timeout=0.01)  # its only waiter left: released
            with anyio.fail_after(10):
                # The callback comes while nobody holds the job: relayed and stored.
                while relay.stats["received"] < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            with anyio.fail_after(5):
                video = await job
        assert video.task_id == job.task_id and job.resolved_by == "callback"
        assert job.polls == 0


async def test_a_relay_that_lost_its_subscription_finds_what_was_published_meanwhile(
    redis: Redis,
) -> None:
    async with Sandbox(render_time=0.05, seed=6) as sb:
        relay = RedisCallbackRelay(redis)
        no_poll = FAST_POLL.__class__(fallback_interval=300, max_wait=60)
        async with _client(sb, relay=relay, poll=no_poll) as c:
            job = c.job("mp4_waiting", expect_callback=True)
            with anyio.fail_after(5):
                # Its first look-up (nothing stored yet) is done: a counter, no event.
                while relay.stats["lookups"] < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            # Cut every subscriber connection, and publish while it re-subscribes.
            await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            body = {
                "code": 200,
                "msg": "ok",
                "data": {"task_id": "mp4_waiting", "video_url": "http://127.0.0.1:1/w.mp4"},
            }
            await RedisCallbackRelay(redis).publish("mp4_waiting", body)
            with anyio.fail_after(10):
                video = await job
        assert video.video_url.endswith("/w.mp4")
        assert relay.stats["reconnects"] >= 1


async def test_the_listener_answers_503_when_redis_cannot_store_the_callback() -> None:
    with redis_server() as server:
        r = Redis.from_url(server.url)
        async with Sandbox(render_time=0.05) as sb:
            listener = CallbackListener()
            async with _client(sb, callbacks=listener, relay=RedisCallbackRelay(r)):
                server.kill()
                body = {
                    "code": 200,
                    "msg": "ok",
                    "data": {"task_id": "mp4_x", "video_url": "http://127.0.0.1:1/x.mp4"},
                }
                async with aiohttp.ClientSession() as session:
                    with anyio.fail_after(30):
                        async with session.post(listener.callback_url, json=body) as resp:
                            status = resp.status
        await r.aclose()
    assert status == 503  # the sender retries: not lost


def test_a_listener_secret_must_be_long_and_url_safe() -> None:
    with pytest.raises(InvalidRequestError):
        CallbackListener(secret="short")
    for bad in ("a/" * 20, "a?" * 20, "é" * 40, "x" * 31):
        with pytest.raises(InvalidRequestError):
            CallbackListener(secret=bad)
    assert CallbackListener(secret="x" * 32).route.endswith("{secret}")


# The shared job store.


def _record(key: str, state: str = SUBMITTED, task_id: str | None = None) -> JobRecord:
    from suno_mp4 import VideoRequest

    return JobRecord(key, VideoRequest("t" + key, "a" + key), state, task_id=task_id)


async def test_store_round_trip_and_ownership(redis: Redis) -> None:
    a = RedisJobStore(redis, worker_id="a")
    b = RedisJobStore(redis, worker_id="b")
    await a.save(_record("k1", task_id="mp4_1"))
    await a.save(_record("k2", SUBMITTING))
    await b.save(_record("k3", task_id="mp4_3"))
    assert (await b.get("k1")) == (await a.get("k1"))
    assert (await b.find_task("mp4_1")) is not None
    assert {r.key for r in await a.unfinished()} == {"k1", "k2"}
    assert {r.key for r in await b.unfinished()} == {"k3"}
    done = _record("k1", "done", task_id="mp4_1")
    await a.save(done)
    assert {r.key for r in await a.unfinished()} == {"k2"}
    assert {r.key for r in await a.all()} == {"k1", "k2"}


async def test_only_a_dead_workers_records_are_claimed_and_only_once(redis: Redis) -> None:
    dead = RedisJobStore(redis, worker_id="dead", lease=0.2)
    alive = RedisJobStore(redis, worker_id="alive", lease=30)
    heirs = [RedisJobStore(redis, worker_id=f"heir{i}") for i in range(3)]
    await dead.renew()
    await alive.renew()
    for i in range(10):
        await dead.save(_record(f"d{i}", task_id=f"mp4_d{i}"))
        await alive.save(_record(f"a{i}", task_id=f"mp4_a{i}"))
    await dead.save(_record("d-done", "done", task_id="mp4_dd"))
    assert await heirs[0].claim() == []  # its lease still runs
    with anyio.fail_after(5):
        while await redis.exists("{suno-mp4}:jobs:alive:dead"):  # noqa: ASYNC110 - a TTL
            await anyio.sleep(0.05)
    claimed: list[list[JobRecord]] = [[] for _ in heirs]

    async def claim(i: int) -> None:
        claimed[i] = list(await heirs[i].claim())

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(claim, i)
    keys = sorted(r.key for batch in claimed for r in batch)
    assert keys == sorted(f"d{i}" for i in range(10))  # each once; finished ones stay
    assert await dead.unfinished() == []
    assert len(await alive.unfinished()) == 10


async def test_a_dead_clients_jobs_are_finished_by_another_never_resubmitted(
    redis: Redis,
) -> None:
    async with Sandbox(render_time=(1.0, 1.5), seed=7) as sb:
        tracks = [sb.add_track() for _ in range(12)]
        first = RedisJobStore(redis, worker_id="first", lease=0.6)
        async with _client(sb, store=first) as c:
            jobs = [await c.create_video(*t) for t in tracks[:10]]
        # "first" is gone with 10 jobs rendering, and one submit cut short.
        await first.save(_record("cut", SUBMITTING))
        second = RedisJobStore(redis, worker_id="second", lease=0.6)
        all_claimed = anyio.Event()

        def on_claim(job: object) -> None:
            if c.claimed == 10:
                all_claimed.set()

        async with _client(sb, store=second, on_claim=on_claim) as c:
            with anyio.fail_after(20):
                await all_claimed.wait()
                mine = [job async for job in c.resume()]
                videos = [await job for job in mine]
            assert sorted(v.task_id for v in videos) == sorted(j.task_id for j in jobs)
            unknown = await c.unknown_submissions()
        assert max(sb.stats.submits.values()) == 1
        assert sum(sb.stats.submits.values()) == 10
        assert [r.key for r in unknown] == ["cut"]
        assert unknown[0].state == UNKNOWN
        finished = [r for r in await second.all() if r.state == "done"]
        assert len(finished) == 10


async def test_submit_with_a_key_is_done_once(redis: Redis) -> None:
    async with Sandbox(render_time=0.05, seed=8) as sb:
        track = sb.add_track()
        async with _client(sb, store=RedisJobStore(redis, worker_id="w")) as c:
            job = await c.create_video(*track, key="track-1")
            again = await c.create_video(*track, key="track-1")
            assert again is job
            with anyio.fail_after(10):
                await job
            with anyio.fail_after(5):
                # The final record is written in the background: nothing to await.
                while (await c.store.get("track-1")).state != "done":  # type: ignore[union-attr]  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            finished = await c.create_video(*track, key="track-1")
            assert finished.done() and finished.resolved_by == "store"
        assert sum(sb.stats.submits.values()) == 1


async def test_a_429_seen_by_one_client_pauses_the_others(redis: Redis) -> None:
    paused = anyio.Event()

    class Watched(RedisRateLimit):
        async def pause(self, seconds: float) -> None:
            await super().pause(seconds)
            paused.set()

    async with Sandbox(render_time=0.05, seed=9) as sb:
        first, second = sb.add_track(), sb.add_track()
        a = _client(sb, rate_limit=Watched(redis, 10, name="storm"))
        b = _client(sb, rate_limit=RedisRateLimit(redis, 10, name="storm"))
        async with a, b:
            sb.faults.rate_limit_storm_until = sb.now() + 1.0
            with anyio.fail_after(15):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(a.create_video, *first)
                    await paused.wait()  # a got its 429: the pause is in Redis
                    await b.create_video(*second)
        # b waited out the pause instead of running into the storm itself.
        assert sb.stats.faults["rate_limit_storm"] == 1
        assert sum(sb.stats.submits.values()) == 2


async def test_a_store_that_cannot_write_ahead_fails_the_submit_before_sending() -> None:
    with redis_server() as server:
        r = Redis.from_url(server.url)
        async with Sandbox(render_time=0.05) as sb:
            track = sb.add_track()
            async with _client(sb, store=RedisJobStore(r, worker_id="w")) as c:
                server.kill()
                with anyio.fail_after(30), pytest.raises(TransportError) as info:
                    await c.create_video(*track)
            assert info.value.sent is False
            assert "job store" in str(info.value)
            assert sum(sb.stats.submits.values()) == 0
        await r.aclose()


async def test_finished_records_expire_with_their_video(redis: Redis) -> None:
    store = RedisJobStore(redis, worker_id="w", finished_ttl=3600)
    await store.save(_record("k", task_id="mp4_k"))
    assert await redis.ttl("{suno-mp4}:jobs:record:k") == -1  # unfinished: kept
    await store.save(_record("k", "done", task_id="mp4_k"))
    assert 0 < await redis.ttl("{suno-mp4}:jobs:record:k") <= 3600
    assert 0 < await redis.ttl("{suno-mp4}:jobs:task:mp4_k") <= 3600


async def test_a_closed_client_has_handed_back_every_permit(redis: Redis) -> None:
    async with Sandbox(render_time=0.05, seed=10) as sb:
        tracks = [sb.add_track() for _ in range(8)]
        limit = RedisRateLimit(redis, RateLimit(5, 0.2), name="handback", lease=60)
        async with _client(sb, rate_limit=limit) as c:
            with anyio.fail_after(10):
                jobs = [await c.create_video(*t) for t in tracks]
                for job in jobs:
                    await job
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    scores = [s for _, s in await redis.zrange("{suno-mp4}:rate:handback", 0, -1, withscores=True)]
    # A permit still "in flight" would count until its 60 s lease ends.
    assert all(s <= now_ms + 210 + 50 for s in scores)


async def test_requests_cancelled_while_taking_a_permit_leave_none_behind(redis: Redis) -> None:
    from suno_mp4._limiter import RequestLimiter

    limiter = RequestLimiter(RedisRateLimit(redis, RateLimit(50, 0.1), name="cancel", lease=60))
    async with anyio.create_task_group() as tg:
        await tg.start(limiter.run)
        for i in range(200):
            # Cancel at many moments of the round trip to Redis.
            with anyio.move_on_after(0.0002 * (i % 10)):
                permit = await limiter.acquire()
                permit.release()
        with anyio.fail_after(5):
            await limiter.flush()
        tg.cancel_scope.cancel()
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    scores = [s for _, s in await redis.zrange("{suno-mp4}:rate:cancel", 0, -1, withscores=True)]
    leaked = [s for s in scores if s > now_ms + 110 + 50]  # counting until the 60 s lease
    assert leaked == []


async def test_a_web_tier_listener_relays_to_workers_that_serve_nothing(redis: Redis) -> None:
    # The web tier (a bot's aiohttp server, say) only receives callbacks; the workers that
    # submit have no listener at all and hand out the web tier's URL.
    web_tier = CallbackListener(relay=RedisCallbackRelay(redis))
    await web_tier.start()
    try:
        async with Sandbox(render_time=0.1, seed=11) as sb:
            tracks = [sb.add_track() for _ in range(10)]
            relay = RedisCallbackRelay(redis)
            async with _client(sb, relay=relay, callback_url=web_tier.callback_url) as worker:
                jobs = [await worker.create_video(*t) for t in tracks]
                with anyio.fail_after(20):
                    for job in jobs:
                        await job
    finally:
        await web_tier.stop()
    assert {j.resolved_by for j in jobs} == {"callback"}
    assert sum(j.polls for j in jobs) == 0  # expecting callbacks: only the safety poll
    assert web_tier.answers == {200: 10}
    assert relay.stats["resolved"] == 10


async def test_a_listener_with_neither_client_nor_relay_answers_503() -> None:
    listener = CallbackListener()
    await listener.start()
    try:
        body = {"code": 200, "msg": "ok", "data": {"task_id": "mp4_y", "video_url": None}}
        async with aiohttp.ClientSession() as session:
            async with session.post(listener.callback_url, json=body) as resp:
                assert resp.status == 503
    finally:
        await listener.stop()


def test_a_client_callback_url_must_be_http() -> None:
    with pytest.raises(InvalidRequestError):
        Client("k", callback_url="ftp://x")


@pytest.mark.parametrize(
    "junk",
    [
        b"not json",
        b"[1, 2]",
        b"5",
        b'{"state": "submitted"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"key": "j", "state": "zzz", "request": {}}',
        b"\xff\xfe latin",
    ],
)
async def test_junk_under_a_stores_keys_fails_that_record_alone(redis: Redis, junk: bytes) -> None:
    # Another version, a bug or a person may have written anything under the store's keys.
    from suno_mp4 import JobStoreError

    dead = RedisJobStore(redis, worker_id="dead", lease=0.2)
    heir = RedisJobStore(redis, worker_id="heir")
    await dead.renew()
    for i in range(3):
        await dead.save(_record(f"good{i}", task_id=f"mp4_{i}"))
    await dead.save(_record("junk", task_id="mp4_j"))
    await redis.set("{suno-mp4}:jobs:record:junk", junk)
    # A dead worker entry whose sets are no sets (one of them only: a claim must not stop
    # half-way, having moved the one and not the other): read as empty, then removed.
    await redis.sadd("{suno-mp4}:jobs:workers", "bad0", "bad1")
    await redis.set("{suno-mp4}:jobs:unfinished:bad0", "not a set")
    await redis.sadd("{suno-mp4}:jobs:unfinished:bad1", "good-of-bad1")
    await redis.set("{suno-mp4}:jobs:keys:bad1", "not a set")
    await redis.set(
        "{suno-mp4}:jobs:record:good-of-bad1",
        record_to_json(_record("good-of-bad1", task_id="mp4_b")),
    )
    with pytest.raises(JobStoreError):
        await dead.get("junk")
    assert {r.key for r in await dead.unfinished()} == {"good0", "good1", "good2"}
    with anyio.fail_after(5):
        while await redis.exists("{suno-mp4}:jobs:alive:dead"):  # noqa: ASYNC110 - a TTL
            await anyio.sleep(0.05)
    assert {r.key for r in await heir.claim()} == {"good0", "good1", "good2", "good-of-bad1"}
    assert await redis.smembers("{suno-mp4}:jobs:workers") == set()  # the dead ones left
    await heir.delete("junk")  # the way out of junk
    assert await heir.get("junk") is None


async def test_junk_in_the_shared_limit_fails_a_request_instead_of_holding_it(
    redis: Redis,
) -> None:
    # A pause of a year, or permits that never end: no limit of ours sets them.
    from suno_mp4 import TransportError

    limit = RedisRateLimit(redis, 2, name="junk")
    await redis.set("{suno-mp4}:rate:junk:pause", "1", px=365 * 86_400_000)
    with anyio.fail_after(10), pytest.raises(TransportError, match="longer than any"):
        await limit.acquire()
    await redis.delete("{suno-mp4}:rate:junk:pause")
    await redis.zadd("{suno-mp4}:rate:junk", {"a": 1e18, "b": 1e18})
    with anyio.fail_after(10):  # permits that would never end are dropped as junk
        token = await limit.acquire()
    await limit.release(token)


async def test_a_shared_limit_with_a_long_window_waits_rather_than_failing(redis: Redis) -> None:
    # One request a day is a limit, not junk: a full limit asks for a long wait, as it should.
    limit = RedisRateLimit(redis, RateLimit(1, per_seconds=7200), name="daily")
    await limit.acquire()
    with anyio.move_on_after(0.5) as waiting:
        await limit.acquire()
    assert waiting.cancelled_caught  # still waiting, no error
