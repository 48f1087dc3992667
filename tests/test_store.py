"""Durable jobs: the store records every submission before and after the POST, and a
restarted process resumes what was unfinished without paying twice."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import attrs
import pytest
from anyio.streams.text import TextReceiveStream
from suno_mp4_sandbox import Sandbox

from suno_mp4 import (
    AuthenticationError,
    Client,
    InvalidRequestError,
    JobRecord,
    MemoryJobStore,
    SQLiteJobStore,
    TransportError,
    VideoRequest,
)
from suno_mp4._store import DONE, SUBMITTED, SUBMITTING, UNKNOWN

from .conftest import FAST_POLL, FAST_RETRY

pytestmark = pytest.mark.anyio


async def test_submission_is_recorded_before_create_video_returns(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    async with (
        Sandbox(render_time=0.3) as sb,
        Client(sb.api_key, base_url=sb.base_url, store=store, poll=FAST_POLL) as client,
    ):
        job = await client.create_video(*sb.add_track(), author="Me")
        record = await store.find_task(job.task_id)
        assert record is not None and record.state == SUBMITTED
        assert record.request == job.request
        with anyio.fail_after(10):
            video = await job
        await anyio.wait_all_tasks_blocked()
    record = await store.find_task(job.task_id)
    assert record is not None and record.state == DONE and record.video == video
    await store.aclose()


async def test_restart_resumes_unfinished_jobs_without_resubmitting(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with Sandbox(render_time=1.0) as sb:
        tracks = [sb.add_track() for _ in range(5)]
        first = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, store=first, poll=FAST_POLL) as c:
            ids = [(await c.create_video(*t)).task_id for t in tracks]
        await first.aclose()  # "the process died" with every job pending
        second = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, store=second, poll=FAST_POLL) as c:
            jobs = [job async for job in c.resume()]
            assert sorted(j.task_id for j in jobs) == sorted(ids)
            with anyio.fail_after(10):
                videos = [await j for j in jobs]
            await anyio.wait_all_tasks_blocked()
        assert all(v.video_url == sb.task(v.task_id).video_url for v in videos)
        assert [sb.stats.submits[t] for t in tracks] == [1] * 5
        assert await second.unfinished() == []
        await second.aclose()


async def test_finished_jobs_are_served_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with Sandbox(render_time=0.05) as sb:
        first = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, store=first, poll=FAST_POLL) as c:
            video = await (await c.create_video(*sb.add_track()))
            await anyio.wait_all_tasks_blocked()
        await first.aclose()
        sb.stats.reset()
        second = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, store=second) as c:
            jobs = [job async for job in c.resume(include_finished=True)]
        await second.aclose()
    assert len(jobs) == 1 and jobs[0].done() and jobs[0].resolved_by == "store"
    assert jobs[0].result() == video
    assert sum(sb.stats.requests.values()) == 0  # no request was needed


async def test_interrupted_submission_is_reported_unknown_never_resent(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    async with Sandbox() as sb:
        track = sb.add_track()
        # Left by a run that died an hour ago (a live submit's record is left to it).
        record = JobRecord("k1", VideoRequest(*track), SUBMITTING)
        await store.save(attrs.evolve(record, updated_at=record.updated_at - 3600))
        async with Client(sb.api_key, base_url=sb.base_url, store=store) as client:
            resumed = [job async for job in client.resume()]
            unknown = await client.unknown_submissions()
        assert resumed == []
        assert [r.key for r in unknown] == ["k1"] and unknown[0].state == UNKNOWN
        assert sb.stats.submits[track] == 0
    await store.aclose()


async def test_a_lost_submit_answer_is_recorded_as_unknown(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    async with Sandbox() as sb:
        sb.faults.submit_5xx_after_accept = 1.0
        async with Client(sb.api_key, base_url=sb.base_url, store=store, retry=FAST_RETRY) as c:
            with pytest.raises(Exception, match="502"):
                await c.create_video(*sb.add_track())
            unknown = await c.unknown_submissions()
    assert len(unknown) == 1 and "502" in (unknown[0].error or "")
    await store.aclose()


async def test_the_api_key_is_never_stored(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = SQLiteJobStore(db)
    async with (
        Sandbox(render_time=0.05) as sb,
        Client(sb.api_key, base_url=sb.base_url, store=store, poll=FAST_POLL) as client,
    ):
        await (await client.create_video(*sb.add_track()))
        await anyio.wait_all_tasks_blocked()
    await store.aclose()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert sb.api_key.encode() not in raw
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def _run_worker(sb: Sandbox, tracks: Path, db: Path, kill_after: int | None) -> int:
    args = [sys.executable, str(Path(__file__).with_name("_crash_worker.py"))]
    args += [sb.base_url, sb.api_key, str(tracks), str(db)]
    async with await anyio.open_process(args) as proc:
        assert proc.stdout is not None
        submitted = 0
        async for chunk in TextReceiveStream(proc.stdout):
            submitted += chunk.count("submitted ")
            if kill_after is not None and submitted >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        return await proc.wait()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_crash_at_a_random_moment_loses_nothing_and_pays_once(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    async with Sandbox(render_time=(0.05, 0.5), seed=seed) as sb:
        tracks = [sb.add_track() for _ in range(500)]
        tracks_file = tmp_path / "tracks.json"
        tracks_file.write_text(json.dumps(tracks))
        db = tmp_path / "jobs.db"
        with anyio.fail_after(120):
            assert await _run_worker(sb, tracks_file, db, rng.randint(1, 450)) == -signal.SIGKILL
            assert await _run_worker(sb, tracks_file, db, None) == 0
        store = SQLiteJobStore(db)
        records = await store.all()
        await store.aclose()
    by_track = {(r.request.task_id, r.request.audio_id): r for r in records}
    unknown = [r for r in records if r.state in (UNKNOWN, SUBMITTING)]
    done = [r for r in records if r.state == DONE]
    # Nothing lost: every track is done, or reported as "may have been submitted".
    assert set(by_track) == set(tracks)
    assert len(done) + len(unknown) == 500
    # Nothing paid twice.
    assert max(sb.stats.submits.values()) == 1
    print(f"\nseed {seed}: {len(done)} done, {len(unknown)} unknown after SIGKILL")


async def test_a_store_failing_after_the_submit_still_hands_over_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from suno_mp4 import MemoryJobStore

    class Flaky(MemoryJobStore):
        async def save(self, record: JobRecord) -> None:
            if record.state != SUBMITTING:
                raise OSError("disk full")
            await super().save(record)

    async with Sandbox(render_time=0.05) as sb:
        track = sb.add_track()
        async with Client(
            sb.api_key, base_url=sb.base_url, poll=FAST_POLL, retry=FAST_RETRY, store=Flaky()
        ) as c:
            job = await c.create_video(*track)  # paid for: must not raise
            with anyio.fail_after(10):
                video = await job
        assert video.task_id == job.task_id
        assert sum(sb.stats.submits.values()) == 1
    assert "could not record" in caplog.text


class _StoreThatCannotWrite(MemoryJobStore):
    """A store whose write-ahead insert fails (``raises``) or never returns."""

    def __init__(self, raises: bool) -> None:
        super().__init__()
        self.raises = raises
        self.inserts = 0

    async def insert(self, record: JobRecord) -> JobRecord | None:
        self.inserts += 1
        if self.raises:
            raise TransportError("the store is down", endpoint="job store", sent=False)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("raises", [True, False], ids=["store-error", "store-hangs"])
async def test_a_write_ahead_that_fails_sends_nothing_and_is_not_retried(raises: bool) -> None:
    # The error says "nothing was sent" (sent=False), which the transport retries for a
    # submit: a retry would have gone out with no record, billed and unrecorded.
    store = _StoreThatCannotWrite(raises)
    async with Sandbox(render_time=0.05) as sb:
        track = sb.add_track()
        async with Client(
            sb.api_key, base_url=sb.base_url, retry=FAST_RETRY, store=store, timeout=0.2
        ) as c:
            with anyio.fail_after(20), pytest.raises(TransportError) as info:
                await c.create_video(*track)
            assert info.value.sent is False
            assert await c.unknown_submissions() == []
        assert store.inserts == 1
        assert sum(sb.stats.submits.values()) == 0


async def test_a_job_that_failed_for_another_reason_than_rendering_stays_resumable(
    tmp_path: Path,
) -> None:
    # Its polls were refused (a wrong key, say): the video may well be rendering. The
    # record must not read "failed" (a re-run would report a render failure, and only a
    # paid re-submit would get the video); the next run attaches to it and asks again.
    db = tmp_path / "jobs.db"
    async with Sandbox(render_time=0.2) as sb:
        track = sb.add_track()
        store = SQLiteJobStore(db)
        async with Client(
            sb.api_key, base_url=sb.base_url, store=store, poll=FAST_POLL, retry=FAST_RETRY
        ) as c:
            job = await c.create_video(*track)
            key, sb.api_key = sb.api_key, "sk-revoked-meanwhile"  # its polls now get 401
            with anyio.fail_after(10), pytest.raises(AuthenticationError):
                await job
            await anyio.wait_all_tasks_blocked()
        await store.aclose()
        sb.api_key = key
        store = SQLiteJobStore(db)
        assert (await store.find_task(job.task_id)).state == SUBMITTED  # type: ignore[union-attr]
        async with Client(
            sb.api_key, base_url=sb.base_url, store=store, poll=FAST_POLL, retry=FAST_RETRY
        ) as c:
            again = await c.create_video(*track)
            with anyio.fail_after(10):
                video = await again
        await store.aclose()
        assert again.task_id == job.task_id and video.task_id == job.task_id
        assert sb.stats.submits[track] == 1


@pytest.mark.parametrize("damage", ["corrupt", "a-folder"])
async def test_a_store_that_cannot_be_used_is_a_typed_error_and_sends_nothing(
    tmp_path: Path, damage: str
) -> None:
    from suno_mp4 import JobStoreError

    db = tmp_path / "jobs.db"
    if damage == "corrupt":
        db.write_bytes(b"not a database, whatever it was meant to be" * 100)
    else:
        db.mkdir()
    store = SQLiteJobStore(db)
    async with Sandbox(render_time=0.05) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, store=store, retry=FAST_RETRY) as c:
            with anyio.fail_after(20), pytest.raises(JobStoreError, match="job store"):
                await c.create_video(*sb.add_track())
        assert sum(sb.stats.submits.values()) == 0
    await store.aclose()


async def test_a_store_locked_by_another_program_fails_after_its_busy_timeout(
    tmp_path: Path,
) -> None:
    import sqlite3

    from suno_mp4 import JobStoreError

    class Counting(SQLiteJobStore):
        metas = 0

        async def save_meta(self, name: str, value: str) -> None:
            self.metas += 1
            await super().save_meta(name, value)

    db = tmp_path / "jobs.db"
    store = Counting(db, busy_timeout=0.3)
    await store.is_empty()  # made
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program's write lock
    try:
        async with Sandbox(render_time=0.05) as sb:
            async with Client(sb.api_key, base_url=sb.base_url, store=store) as c:
                with anyio.fail_after(10), pytest.raises(JobStoreError, match="locked"):
                    await c.create_video(*sb.add_track())
            assert sum(sb.stats.submits.values()) == 0
        # Closing did not wait for the locked store again (to save the render times).
        assert store.metas == 0
    finally:
        blocker.close()
        await store.aclose()


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "5", True])
def test_a_busy_timeout_that_is_no_positive_number_is_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="busy_timeout"):
        SQLiteJobStore(tmp_path / "jobs.db", busy_timeout=bad)  # type: ignore[arg-type]


async def test_a_job_submitted_long_ago_is_polled_at_once_when_attached(tmp_path: Path) -> None:
    # A re-run or a resume: its render may well be over, so no first delay (30 s here)
    # stands between it and its result.
    import attrs
    from suno_mp4_sandbox import PlaceholderRenderer

    from suno_mp4 import PollPolicy

    db = tmp_path / "jobs.db"
    async with Sandbox(render_time=0, renderer=PlaceholderRenderer()) as sb:  # done at once
        track = sb.add_track()
        store = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, store=store) as c:
            job = await c.create_video(*track)
        record = await store.find_task(job.task_id)
        assert record is not None and record.state == SUBMITTED
        await store.save(attrs.evolve(record, updated_at=record.updated_at - 600))
        slow_first = PollPolicy(initial_delay=30, max_interval=30)
        async with Client(sb.api_key, base_url=sb.base_url, store=store, poll=slow_first) as c:
            with anyio.fail_after(10):
                again = await c.create_video(*track)  # attached: polled at once
                video = await again
        await store.aclose()
    assert video.task_id == job.task_id and sb.stats.submits[track] == 1
