"""The resolution engine at scale: one poller, rate limits, batches, as_completed."""

from __future__ import annotations

import anyio
import pytest
from suno_mp4_sandbox import Faults, Sandbox

from suno_mp4 import (
    BatchResult,
    CallbackListener,
    Client,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    VideoGenerationError,
    VideoRequest,
    as_completed,
)

from .conftest import FAST_POLL, FAST_RETRY

pytestmark = pytest.mark.anyio


async def test_2000_concurrent_jobs_polling_only() -> None:
    poll = PollPolicy(initial_delay=0.5, factor=1.6, max_interval=5, max_wait=120)
    async with Sandbox(render_time=(0.5, 3.0), seed=7) as sb:
        tracks = [sb.add_track() for _ in range(2000)]
        async with Client(sb.api_key, base_url=sb.base_url, poll=poll, seed=7) as client:
            with anyio.fail_after(120):
                jobs = []
                async with anyio.create_task_group() as tg:

                    async def submit(track: tuple[str, str]) -> None:
                        jobs.append(await client.create_video(*track))

                    for track in tracks:
                        tg.start_soon(submit, track)
                videos = [await job for job in jobs]
            # One poller: a fixed set of tasks however many jobs are pending.
            assert len(client._poller) == 0 or all(j.done() for j in jobs)
    assert all(
        v.video_url == sb.task(j.task_id).video_url for v, j in zip(videos, jobs, strict=True)
    )
    assert set(sb.stats.submits.values()) == {1} and len(sb.stats.submits) == 2000
    polls = sum(j.polls for j in jobs) / len(jobs)
    print(f"\n2000 jobs, polling only: {polls:.2f} polls per job")
    assert polls <= 4


async def test_listener_mode_with_lossy_callbacks_resolves_everything() -> None:
    faults = Faults(callback_drop=0.2, callback_duplicate=0.2, callback_early=0.1)
    poll = PollPolicy(initial_delay=0.05, fallback_interval=1.5, jitter=0.1, max_wait=60)
    async with Sandbox(render_time=(0.1, 0.5), faults=faults, seed=11) as sb:
        tracks = [sb.add_track() for _ in range(300)]
        async with Client(
            sb.api_key, base_url=sb.base_url, callbacks=CallbackListener(), poll=poll, seed=11
        ) as client:
            with anyio.fail_after(60):
                jobs = [await client.create_video(*t) for t in tracks]
                videos = [await j for j in jobs]
    assert all(
        v.video_url == sb.task(j.task_id).video_url for v, j in zip(videos, jobs, strict=True)
    )
    by_callback = [j for j in jobs if j.resolved_by == "callback"]
    by_poll = [j for j in jobs if j.resolved_by == "poll"]
    assert len(by_callback) + len(by_poll) == 300
    assert by_poll, "some callbacks were dropped: the safety poll must have resolved those"
    # Jobs whose callback arrived made no poll (resolution came well before 1.5 s).
    assert all(j.polls == 0 for j in by_callback)
    assert sb.stats.faults["callback_drop"] >= len(by_poll) - 5


async def test_configured_rate_limit_holds_and_keeps_throughput() -> None:
    n = 40
    poll = PollPolicy(initial_delay=60, max_wait=120)  # no polls in the window we measure
    async with Sandbox(render_time=30, rate_limit=(10, 1.0)) as sb:
        tracks = [sb.add_track() for _ in range(n)]
        async with Client(
            sb.api_key, base_url=sb.base_url, rate_limit=RateLimit(10, 1.0), poll=poll
        ) as client:
            with anyio.fail_after(30):
                start = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    for t in tracks:
                        tg.start_soon(client.create_video, *t)
                elapsed = anyio.current_time() - start
    assert sb.stats.answers[429] == 0
    # n requests at 10/s: the first 10 go at once, the rest need (n - 10) / 10 seconds.
    throughput = (n - 10) / elapsed
    # A figure, not an assertion: a busy machine makes it slower (benchmarks.ratelimit).
    print(f"\nRateLimit(10, 1): {throughput:.2f} submits/s after the first burst, 0 x 429")


async def test_unconfigured_client_adapts_to_429_without_a_storm() -> None:
    n = 60
    poll = PollPolicy(initial_delay=60, max_wait=120)
    retry = RetryPolicy(attempts=50, initial_backoff=0.1)
    async with Sandbox(render_time=30, rate_limit=(10, 1.0)) as sb:
        tracks = [sb.add_track() for _ in range(n)]
        async with Client(sb.api_key, base_url=sb.base_url, poll=poll, retry=retry) as client:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for t in tracks:
                        tg.start_soon(client.create_video, *t)
    per_job = sb.stats.answers[429] / n
    print(f"\nunconfigured vs 10/s: {sb.stats.answers[429]} answers of 429 for {n} jobs")
    assert set(sb.stats.submits.values()) == {1}
    assert per_job <= 1.0


async def test_polls_stop_when_every_waiter_left_and_resume_with_a_new_one() -> None:
    poll = PollPolicy(initial_delay=0.05, max_interval=0.1, max_wait=60)
    async with (
        Sandbox(render_time=1.5) as sb,
        Client(sb.api_key, base_url=sb.base_url, poll=poll, retry=FAST_RETRY) as client,
    ):
        job = await client.create_video(*sb.add_track())
        with anyio.fail_after(10):
            with anyio.move_on_after(0.3):
                await job  # polled while someone waits...
            polled = sb.stats.polls[job.task_id]
            assert polled >= 2
            await anyio.sleep(0.5)  # ...and not at all while nobody does
            assert sb.stats.polls[job.task_id] == polled
            video = await job  # a new waiter: polling resumes and finds the video
    assert video.video_url == sb.task(job.task_id).video_url
    assert sb.stats.polls[job.task_id] > polled


async def test_batch_yields_results_in_completion_order_and_survives_failures(
    sandbox: Sandbox, client: Client
) -> None:
    good = [VideoRequest(*sandbox.add_track()) for _ in range(8)]
    bad = [VideoRequest(*sandbox.add_track(fail="broken")) for _ in range(2)]
    missing = [VideoRequest("nope", "nope")]
    results: list[BatchResult] = []
    with anyio.fail_after(20):
        async for result in client.create_videos(good + bad + missing, max_in_flight=4):
            results.append(result)
    assert len(results) == 11
    ok = {r.request for r in results if r.ok}
    assert ok == set(good)
    errors = {r.request: r.error for r in results if not r.ok}
    assert all(isinstance(errors[r], VideoGenerationError) for r in bad)
    assert type(errors[missing[0]]).__name__ == "NotFoundError"
    assert all(
        r.video is not None and r.video.audio_id == r.request.audio_id for r in results if r.ok
    )


async def test_batch_respects_max_in_flight(sandbox: Sandbox, client: Client) -> None:
    requests = [VideoRequest(*sandbox.add_track()) for _ in range(12)]
    peak = 0

    async for _ in client.create_videos(requests, max_in_flight=3):
        pending = sum(1 for t in sandbox.tasks.values() if t.status == "PENDING")
        peak = max(peak, pending)
    assert peak <= 3
    assert sum(sandbox.stats.submits.values()) == 12


async def test_leaving_a_batch_early_stops_submitting(sandbox: Sandbox, client: Client) -> None:
    requests = [VideoRequest(*sandbox.add_track()) for _ in range(50)]
    with anyio.fail_after(20):
        async with client.create_videos(requests, max_in_flight=2) as batch:
            async for _ in batch:
                break
    submitted = sum(sandbox.stats.submits.values())
    assert submitted <= 4  # the two in flight, and nothing after the break


async def test_as_completed_yields_every_job_once(sandbox: Sandbox) -> None:
    async with (
        Sandbox(render_time=(0.05, 0.6), seed=3) as sb,
        Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL, retry=FAST_RETRY) as client,
    ):
        jobs = [await client.create_video(*sb.add_track()) for _ in range(10)]
        seen = []
        with anyio.fail_after(20):
            async for job in as_completed(jobs):
                assert job.done()
                seen.append(job)
    assert sorted(j.task_id for j in seen) == sorted(j.task_id for j in jobs)


def _sdk_tasks() -> list[str]:
    """Running tasks of the SDK (anyio names them after their function); not the sandbox's."""
    import asyncio

    names = [t.get_name() for t in asyncio.all_tasks()]
    return [n for n in names if n.startswith("suno_mp4.") and not n.startswith("suno_mp4.sandbox")]


async def test_leaving_the_client_stops_every_task(sandbox: Sandbox) -> None:
    async with Client(
        sandbox.api_key, base_url=sandbox.base_url, callbacks=CallbackListener(), poll=FAST_POLL
    ) as client:
        jobs = [await client.create_video(*sandbox.add_track()) for _ in range(5)]
        batch = client.create_videos([VideoRequest(*sandbox.add_track())], max_in_flight=1)
        await batch.__anext__()
        assert _sdk_tasks()  # the poller and its workers, at least
    assert _sdk_tasks() == []
    assert all(j.done() for j in jobs)
