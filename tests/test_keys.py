"""Keyed submits: an identical request is never billed twice to one store, the claim on a
key is atomic in every store, and each store state does the right thing on a re-run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from suno_mp4_sandbox import Sandbox

from suno_mp4 import (
    AuthenticationError,
    Client,
    InsufficientCreditsError,
    InvalidRequestError,
    JobRecord,
    JobState,
    JobStore,
    MemoryJobStore,
    SQLiteJobStore,
    SubmissionInDoubtError,
    VideoRequest,
)

from .conftest import FAST_POLL, FAST_RETRY

pytestmark = pytest.mark.anyio


def _client(sb: Sandbox, store: JobStore, **kw: Any) -> Client:
    return Client(
        kw.pop("api_key", sb.api_key),
        base_url=sb.base_url,
        store=store,
        poll=FAST_POLL,
        retry=FAST_RETRY,
        **kw,
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], JobStore]]:
    """Makes stores that share one place (one dict, one file, one Redis): like processes."""
    if request.param == "memory":
        shared = MemoryJobStore()
        yield lambda: shared
    elif request.param == "sqlite":
        made: list[SQLiteJobStore] = []

        def sqlite() -> JobStore:
            made.append(SQLiteJobStore(tmp_path / "jobs.db"))
            return made[-1]

        yield sqlite
        for store in made:
            await store.aclose()
    else:
        from redis.asyncio import Redis
        from suno_mp4_sandbox import redis_server

        from suno_mp4.redis import RedisJobStore

        with redis_server() as server:
            redis = Redis.from_url(server.url)
            yield lambda: RedisJobStore(redis)
            await redis.aclose()


async def test_50_concurrent_submits_under_one_key_send_one(
    stores: Callable[[], JobStore],
) -> None:
    async with Sandbox(render_time=0.1) as sb:
        sb.faults.slow_answer = 1.0  # every submit stays on the wire a while: a wide race
        sb.faults.slow_seconds = 0.3
        track = sb.add_track()
        async with _client(sb, stores()) as one, _client(sb, stores()) as two:
            jobs: list[Any] = []

            async def submit(client: Client) -> None:
                jobs.append(await client.create_video(*track))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for i in range(50):  # two clients: like two processes on one store
                        tg.start_soon(submit, one if i % 2 else two)
        assert sb.stats.submits_accepted == 1
        assert len({job.task_id for job in jobs}) == 1


async def test_identical_rows_in_a_batch_are_billed_once(sandbox: Sandbox) -> None:
    track = sandbox.add_track()
    other = sandbox.add_track()
    requests = [VideoRequest(*track)] * 3 + [VideoRequest(*other)]
    async with _client(sandbox, MemoryJobStore()) as client:
        with anyio.fail_after(20):
            results = [r async for r in client.create_videos(requests)]
    assert all(r.ok for r in results) and len(results) == 4
    assert sandbox.stats.submits_accepted == 2


async def test_another_idempotency_key_renders_the_same_content_again(sandbox: Sandbox) -> None:
    track = sandbox.add_track()
    async with _client(sandbox, MemoryJobStore()) as client:
        first = await client.submit(VideoRequest(*track))
        second = await client.submit(VideoRequest(*track, idempotency_key="take 2"))
        assert first.task_id != second.task_id
        assert await client.submit(VideoRequest(*track, idempotency_key="take 2")) is second
    assert sandbox.stats.submits_accepted == 2


async def test_one_key_for_two_different_requests_is_refused_not_answered_with_the_other(
    sandbox: Sandbox,
) -> None:
    # A key names one request: given again for another track (or other branding), its job
    # would be the first track's video, reported as a success.
    t1, t2, t3 = (sandbox.add_track() for _ in range(3))
    async with _client(sandbox, MemoryJobStore()) as client:
        first = await client.create_video(*t1, key="K")
        with pytest.raises(InvalidRequestError, match="another request"):
            await client.create_video(*t2, key="K")
        with pytest.raises(InvalidRequestError, match="another request"):
            await client.create_video(*t1, key="K", author="Other")
        assert await client.create_video(*t1, key="K") is first  # the same request: its job
        requests = [
            VideoRequest(*t3, idempotency_key="take"),
            VideoRequest(*t2, idempotency_key="take"),
        ]
        with anyio.fail_after(20):
            results = [r async for r in client.create_videos(requests)]
    assert sorted(r.ok for r in results) == [False, True]
    refused = next(r for r in results if not r.ok)
    assert isinstance(refused.error, InvalidRequestError)
    assert sandbox.stats.submits_accepted == 2 and t2 not in sandbox.stats.submits


async def test_a_finished_record_under_the_key_of_another_request_is_refused_in_a_batch(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The batch looks finished records up many at a time (a store with get_many): the same
    # check as a single submit's.
    t1, t2, t3 = (sandbox.add_track() for _ in range(3))
    store = SQLiteJobStore(tmp_path / "jobs.db")
    async with _client(sandbox, store) as client:
        with anyio.fail_after(20):
            await (await client.submit(VideoRequest(*t1, idempotency_key="take-2")))
            requests = [VideoRequest(*t2, idempotency_key="take-2"), VideoRequest(*t3)]
            results = {r.request.task_id: r async for r in client.create_videos(requests)}
    await store.aclose()
    assert isinstance(results[t2[0]].error, InvalidRequestError)
    assert results[t3[0]].ok
    assert t2 not in sandbox.stats.submits


async def test_the_content_key_ignores_nothing_that_changes_the_video() -> None:
    base = VideoRequest("t", "a", author="A", domain_name="d.example")
    keys = {
        base.key,
        VideoRequest("t", "b", author="A", domain_name="d.example").key,
        VideoRequest("t", "a", author="B", domain_name="d.example").key,
        VideoRequest("t", "a", author="A", domain_name=None).key,
        VideoRequest("t", "a", author=None, domain_name="A").key,
    }
    assert len(keys) == 5
    assert VideoRequest("t", "a", author="A", domain_name="d.example").key == base.key


async def test_a_rejected_submit_is_sent_again_on_the_next_run(tmp_path: Path) -> None:
    async with Sandbox(render_time=0.05) as sb:
        tracks = [sb.add_track() for _ in range(3)]
        store = SQLiteJobStore(tmp_path / "jobs.db")
        async with _client(sb, store, api_key="wrong-key") as client:
            for track in tracks:
                with pytest.raises(AuthenticationError):
                    await client.create_video(*track)
        assert {r.state for r in await store.by_state()} == {JobState.REJECTED}
        sb.credits = 1  # the key is fixed; then credits run out after one video
        async with _client(sb, store) as client:
            results = [r async for r in client.create_videos(VideoRequest(*t) for t in tracks)]
        assert sum(r.ok for r in results) == 1
        assert sum(isinstance(r.error, InsufficientCreditsError) for r in results) == 2
        sb.credits = 100  # topped up
        async with _client(sb, store) as client:
            with anyio.fail_after(20):
                results = [r async for r in client.create_videos(VideoRequest(*t) for t in tracks)]
        assert all(r.ok for r in results)
        assert sorted(sb.stats.submits.values()) == [1, 1, 1]  # one billed submit per track
        await store.aclose()


class _SaysWhenWrittenAhead(MemoryJobStore):
    """A store that says when a submit's write-ahead record is in: the request goes next."""

    def __init__(self) -> None:
        super().__init__()
        self.written_ahead = anyio.Event()

    async def insert(self, record: JobRecord) -> JobRecord | None:
        holder = await super().insert(record)
        self.written_ahead.set()
        return holder


async def test_a_submit_cancelled_on_the_wire_still_records_its_job(sandbox: Sandbox) -> None:
    sandbox.faults.slow_answer = 1.0  # the answer takes a while: the cancel lands meanwhile
    sandbox.faults.slow_seconds = 0.3
    request = VideoRequest(*sandbox.add_track())
    store = _SaysWhenWrittenAhead()
    async with _client(sandbox, store) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.submit, request)
                await store.written_ahead.wait()
                tg.cancel_scope.cancel()
            record = await store.get(request.key)
            assert record is not None and record.state is JobState.SUBMITTED, record
            job = await client.submit(request)  # known: the same job, not a second submit
        assert job.task_id == record.task_id
    assert sandbox.stats.submits_accepted == 1


class _CountsOnTheWire(MemoryJobStore):
    """Counts submits between their write-ahead and their answer, and the most at once."""

    def __init__(self) -> None:
        super().__init__()
        self.on_the_wire = 0
        self.most = 0
        self.changed = anyio.Event()

    async def insert(self, record: JobRecord) -> JobRecord | None:
        holder = await super().insert(record)
        self.on_the_wire += 1
        self.most = max(self.most, self.on_the_wire)
        self.changed.set()
        return holder

    async def save(self, record: JobRecord) -> None:
        await super().save(record)
        if record.state in (JobState.SUBMITTED, JobState.REJECTED, JobState.UNKNOWN):
            self.on_the_wire -= 1  # its answer came (a result later is no submit)

    async def until(self, count: int) -> None:
        while self.on_the_wire < count:
            self.changed = anyio.Event()
            await self.changed.wait()


async def test_submits_on_the_wire_never_exceed_the_limit_and_a_queued_one_leaves_quietly(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.slow_answer = 1.0  # every answer takes a while: later submits queue
    sandbox.faults.slow_seconds = 0.2
    store = _CountsOnTheWire()
    requests = [VideoRequest(*sandbox.add_track()) for _ in range(7)]
    async with _client(sandbox, store, max_concurrent_submits=2) as client:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for request in requests[:2]:
                    tg.start_soon(client.submit, request)
                await store.until(2)
                with anyio.move_on_after(0.05):  # queued for a slot, then cancelled
                    await client.submit(requests[2])
                for request in requests[3:]:
                    tg.start_soon(client.submit, request)
            assert store.most == 2
            assert await store.get(requests[2].key) is None  # never written, never sent
            for request in requests[:2] + requests[3:]:
                record = await store.get(request.key)
                assert record is not None and record.task_id is not None, record
            # The slots all came back: the next submit goes out without waiting for one.
            await client.submit(requests[2])
    assert sandbox.stats.submits_accepted == 7


async def test_a_submit_in_doubt_is_never_resent_until_deliberately_freed(
    sandbox: Sandbox,
) -> None:
    track = sandbox.add_track()
    request = VideoRequest(*track)
    store = MemoryJobStore()
    # What a process killed while its submit was on the wire leaves behind.
    await store.save(JobRecord(request.key, request, JobState.UNKNOWN))
    async with _client(sandbox, store) as client:
        with pytest.raises(SubmissionInDoubtError):
            await client.submit(request)
        results = [r async for r in client.create_videos([request])]
        assert isinstance(results[0].error, SubmissionInDoubtError)
        assert sandbox.stats.submits_accepted == 0
        await store.delete(request.key)  # checked: it was not billed
        with anyio.fail_after(10):
            await (await client.submit(request))
    assert sandbox.stats.submits_accepted == 1


async def test_a_submitting_record_of_a_dead_process_is_in_doubt_at_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    request = VideoRequest(*sandbox.add_track())
    store = SQLiteJobStore(tmp_path / "jobs.db")
    dead = JobRecord(request.key, request, JobState.SUBMITTING, owner=_dead_process())
    await store.save(dead)
    async with _client(sandbox, store) as client:
        with anyio.fail_after(5), pytest.raises(SubmissionInDoubtError):
            await client.submit(request)
    await store.aclose()
    assert sandbox.stats.submits_accepted == 0


async def test_a_submit_on_the_wire_elsewhere_is_waited_for_and_shared(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    request = VideoRequest(*sandbox.add_track())
    sandbox.faults.slow_answer = 1.0
    sandbox.faults.slow_seconds = 1.0
    first_store, second_store = SQLiteJobStore(tmp_path / "j.db"), SQLiteJobStore(tmp_path / "j.db")
    async with _client(sandbox, first_store) as first, _client(sandbox, second_store) as second:
        jobs: dict[str, Any] = {}
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def submit(name: str, client: Client) -> None:
                    jobs[name] = await client.submit(request)

                tg.start_soon(submit, "first", first)
                await _wait_for_state(first_store, request.key, JobState.SUBMITTING)
                tg.start_soon(submit, "second", second)
        assert jobs["first"].task_id == jobs["second"].task_id
    assert sandbox.stats.submits_accepted == 1
    await first_store.aclose()
    await second_store.aclose()


async def test_store_states_are_a_public_enum_and_records_can_be_listed_and_deleted(
    tmp_path: Path,
) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    records = [
        JobRecord(f"k{i}", VideoRequest("t", f"a{i}"), state) for i, state in enumerate(JobState)
    ]
    for record in records:
        await store.save(record)
    assert [r.key for r in await store.by_state(JobState.DONE, JobState.FAILED)] == ["k2", "k3"]
    assert (await store.get("k5")).state is JobState.UNKNOWN  # type: ignore[union-attr]
    assert (await store.insert(attrs.evolve(records[4], error="again"))) is None  # rejected
    assert (await store.insert(records[0])) == records[0]  # held
    await store.delete("k0")
    assert await store.get("k0") is None
    await store.aclose()


def _dead_process() -> str:
    import socket
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return f"{socket.gethostname()}/{done.stdout.strip()}"


async def _wait_for_state(store: SQLiteJobStore, key: str, state: JobState) -> None:
    # Another client's store write: nothing to await across stores but the file itself.
    deadline = time.monotonic() + 10
    while (record := await store.get(key)) is None or record.state is not state:
        assert time.monotonic() < deadline, f"no {state} record"
        await anyio.sleep(0.01)
