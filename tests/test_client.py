"""The client against the real sandbox: submit, await, errors, retries, attach, timeouts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Literal

import anyio
import pytest
from suno_mp4_sandbox import Sandbox

from suno_mp4 import (
    ALT_RESELLER_CODES,
    APIKLEY_CODES,
    AuthenticationError,
    BadRequestError,
    Client,
    ClientClosedError,
    ConflictError,
    InsufficientCreditsError,
    InvalidRequestError,
    JobTimeoutError,
    MusicVideo,
    NotFoundError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    TaskStatus,
    TransportError,
    ValidationError,
    VideoGenerationError,
    VideoRequest,
)
from suno_mp4._client import NO_CALLBACK_URL
from suno_mp4._endpoints import GENERATE
from suno_mp4._errors import error_for_code

from .conftest import FAST_POLL, FAST_RETRY

pytestmark = pytest.mark.anyio


def _client(sb: Sandbox, **kw: object) -> Client:
    options: dict[str, object] = {
        "api_key": sb.api_key,
        "base_url": sb.base_url,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "seed": 3,
    }
    options.update(kw)
    return Client(**options)  # type: ignore[arg-type]


async def test_create_video_and_await_the_result(sandbox: Sandbox, client: Client) -> None:
    task_id, audio_id = sandbox.add_track(title="Song")
    with anyio.fail_after(10):
        job = await client.create_video(task_id, audio_id, author="DJ", domain_name="x.io")
        video = await job
    assert isinstance(video, MusicVideo)
    assert video.task_id == job.task_id != task_id  # the video task has its own id
    assert video.video_url == sandbox.task(job.task_id).video_url
    assert (video.audio_id, video.source_task_id) == (audio_id, task_id)
    assert video.expires_at > video.completed_at
    assert sandbox.stats.submits[(task_id, audio_id)] == 1
    assert job.done() and job.status.is_ok


async def test_without_listener_the_callback_url_is_a_reserved_invalid_host(
    sandbox: Sandbox, client: Client
) -> None:
    task_id, audio_id = sandbox.add_track()
    job = await client.create_video(task_id, audio_id)
    assert sandbox.task(job.task_id).callback_url == NO_CALLBACK_URL
    assert NO_CALLBACK_URL.split("/")[2].endswith(".invalid")
    with anyio.fail_after(10):
        await job
    # The sandbox could not deliver it: CALLBACK_EXCEPTION still carries the video.
    details = await client.get_video_details(job.task_id)
    assert details.status is TaskStatus.CALLBACK_EXCEPTION
    assert details.video_url == job.result().video_url


async def test_invalid_arguments_raise_before_any_request(sandbox: Sandbox, client: Client) -> None:
    task_id, audio_id = sandbox.add_track()
    sandbox.stats.reset()
    with pytest.raises(InvalidRequestError, match="at most 50"):
        await client.create_video(task_id, audio_id, author="a" * 51)
    with pytest.raises(InvalidRequestError):
        await client.create_video("", audio_id)
    with pytest.raises(InvalidRequestError):
        await client.create_video(task_id, audio_id, callback_url="ftp://nope")
    assert sum(sandbox.stats.requests.values()) == 0


async def test_failed_render_raises_video_generation_error(
    sandbox: Sandbox, client: Client
) -> None:
    task_id, audio_id = sandbox.add_track(fail="audio could not be decoded")
    job = await client.create_video(task_id, audio_id)
    with anyio.fail_after(10), pytest.raises(VideoGenerationError) as info:
        await job
    assert info.value.status is TaskStatus.GENERATE_MP4_FAILED
    assert "could not be decoded" in (info.value.error_message or "")
    assert job.done() and isinstance(job.exception(), VideoGenerationError)


async def test_attach_by_id_resolves_a_task_made_earlier(sandbox: Sandbox, client: Client) -> None:
    task_id, audio_id = sandbox.add_track()
    async with _client(sandbox) as other:
        first = await other.create_video(task_id, audio_id)
        video_task_id = first.task_id
    job = client.job(video_task_id)
    assert client.job(video_task_id) is job  # one job per task id
    with anyio.fail_after(10):
        video = await job
    assert video.video_url == sandbox.task(video_task_id).video_url
    assert sandbox.stats.submits[(task_id, audio_id)] == 1
    # record-info names the track (audioId, musicId), never the music task.
    assert (video.audio_id, video.source_task_id) == (audio_id, None)


async def test_attach_to_unknown_task_raises_not_found(client: Client) -> None:
    with anyio.fail_after(10), pytest.raises(NotFoundError):
        await client.job("mp4_does_not_exist")


async def test_wait_timeout_detaches_only_that_waiter(sandbox: Sandbox) -> None:
    slow = Sandbox(render_time=1.0)
    async with slow, _client(slow) as client:
        job = await client.create_video(*slow.add_track())
        with anyio.fail_after(10):
            with pytest.raises(JobTimeoutError) as info:
                await job.wait(timeout=0.1)
            assert isinstance(info.value, TimeoutError)
            assert job.task_id in str(info.value) and "client.job" in str(info.value)
            assert not job.done()
            video = await job.wait(timeout=10)  # the task went on: a new wait gets it
    assert video.task_id == job.task_id


async def test_max_wait_is_an_overall_deadline() -> None:
    async with Sandbox(render_time=30) as sb:
        poll = FAST_POLL.__class__(initial_delay=0.05, max_interval=0.1, max_wait=0.4)
        async with _client(sb, poll=poll) as client:
            job = await client.create_video(*sb.add_track())
            start = anyio.current_time()
            with anyio.fail_after(5), pytest.raises(JobTimeoutError):
                await job
            assert 0.3 < anyio.current_time() - start < 2
            # Still attachable afterwards: a fresh job for the same remote task.
            assert client.job(job.task_id) is not job


async def test_cancelling_one_waiter_leaves_the_others(sandbox: Sandbox, client: Client) -> None:
    job = await client.create_video(*sandbox.add_track())
    results: list[MusicVideo] = []

    async def waiter() -> None:
        results.append(await job)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await job  # cancelled at once
            tg.start_soon(waiter)
            tg.start_soon(waiter)
    assert len(results) == 2 and results[0] == results[1]


async def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APIKLEY_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match="APIKLEY_API_KEY"):
        Client()


async def test_key_and_base_url_come_from_the_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APIKLEY_API_KEY", sandbox.api_key)
    monkeypatch.setenv("SUNO_MP4_BASE_URL", sandbox.base_url)
    async with Client(poll=FAST_POLL) as client:
        with anyio.fail_after(10):
            await (await client.create_video(*sandbox.add_track()))
    assert os.environ["SUNO_MP4_BASE_URL"] in repr(client)


async def test_using_the_client_outside_async_with_is_a_clear_error(sandbox: Sandbox) -> None:
    client = _client(sandbox)
    with pytest.raises(ClientClosedError, match="async with"):
        await client.create_video("t", "a")
    async with client:
        pass
    with pytest.raises(ClientClosedError, match="closed"):
        await client.get_video_details("x")
    with pytest.raises(ClientClosedError):
        async with client:
            pass


async def test_pending_jobs_fail_clearly_when_the_client_closes() -> None:
    async with Sandbox(render_time=30) as sb:
        async with _client(sb) as client:
            job = await client.create_video(*sb.add_track())
        with anyio.fail_after(5), pytest.raises(ClientClosedError, match="re-attach"):
            await job


async def test_the_api_key_never_shows_in_reprs_or_errors(sandbox: Sandbox) -> None:
    secret = "sk-very-secret-0123456789"
    async with _client(sandbox, api_key=secret) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create_video(*sandbox.add_track())
        assert "check the API key" in str(info.value)
        for text in (str(info.value), repr(info.value), repr(client), repr(client._transport())):
            assert secret not in text


# Every documented code maps to its exception...


async def test_bad_key_raises_authentication_error(sandbox: Sandbox) -> None:
    async with Client("wrong-key", base_url=sandbox.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create_video(*sandbox.add_track())
    assert info.value.code == 401 and info.value.endpoint == GENERATE


async def test_no_credits_raises_insufficient_credits(sandbox: Sandbox, client: Client) -> None:
    sandbox.credits = 0
    with pytest.raises(InsufficientCreditsError):
        await client.create_video(*sandbox.add_track())


async def test_unknown_track_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        await client.create_video("no-such-task", "no-such-audio")


async def test_server_side_validation_raises_validation_error(client: Client) -> None:
    # The SDK validates first, so go through the transport to reach the server's check.
    body = {"taskId": "t", "audioId": "a", "callBackUrl": "not a url"}
    with pytest.raises(ValidationError):
        await client._transport().call("POST", GENERATE, kind="submit", json_body=body)


async def test_an_identical_request_is_not_sent_again_a_deliberate_second_one_is() -> None:
    async with Sandbox(render_time=0.1, conflict_on_duplicate=True) as sb, _client(sb) as client:
        track = sb.add_track()
        first = await client.create_video(*track)
        assert await client.create_video(*track) is first  # same content, same key
        assert sb.stats.submits_accepted == 1
        again = VideoRequest(*track, idempotency_key="second take")
        with pytest.raises(ConflictError):  # sent: this server refuses duplicates
            await client.submit(again)


async def test_maintenance_raises_service_unavailable_after_retries(
    sandbox: Sandbox, client: Client
) -> None:
    sandbox.maintenance = True
    with pytest.raises(ServiceUnavailableError) as info:
        await client.get_video_details("anything")
    assert sandbox.stats.answers[455] == FAST_RETRY.attempts
    assert info.value.retryable


async def test_bare_html_5xx_from_a_proxy_raises_server_error(sandbox: Sandbox) -> None:
    sandbox.faults.poll_5xx = 1.0
    async with _client(sandbox, retry=RetryPolicy(attempts=2, initial_backoff=0.01)) as client:
        with pytest.raises(ServerError) as info:
            await client.get_video_details("anything")
    assert info.value.http_status == 502 and "JSON envelope" in info.value.msg


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (429, RateLimitError),
        (455, ServiceUnavailableError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_seed_code_table(code: int, cls: type[Exception]) -> None:
    err = error_for_code(code, "m", table=APIKLEY_CODES, endpoint="/x", task_id="t1")
    assert type(err) is cls
    assert (err.code, err.endpoint, err.task_id) == (code, "/x", "t1")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (405, RateLimitError),
        (413, ValidationError),
        (429, InsufficientCreditsError),
        (430, RateLimitError),
    ],
)
def test_other_reseller_code_table(code: int, cls: type[Exception]) -> None:
    assert type(error_for_code(code, "m", table=ALT_RESELLER_CODES)) is cls


# Retries...


async def test_rate_limited_submit_waits_for_retry_after_and_succeeds() -> None:
    async with Sandbox(render_time=0.1, rate_limit=(2, 1.0)) as sb:
        tracks = [sb.add_track() for _ in range(3)]
        async with _client(sb, retry=RetryPolicy(attempts=5, initial_backoff=0.01)) as client:
            start = anyio.current_time()
            with anyio.fail_after(15):
                jobs = [await client.create_video(*t) for t in tracks]
            elapsed = anyio.current_time() - start
        assert sb.stats.answers[429] >= 1
        assert elapsed >= 0.9  # the third submit waited for the window (Retry-After)
        assert all(sb.stats.submits[t] == 1 for t in tracks)
        assert len({j.task_id for j in jobs}) == 3


async def test_retry_after_longer_than_the_cap_surfaces_as_rate_limit_error() -> None:
    async with Sandbox(render_time=0.1) as sb:
        sb.faults.rate_limit_storm_until = sb.now() + 600
        retry = RetryPolicy(attempts=5, max_retry_after=5)
        async with _client(sb, retry=retry) as client:
            with anyio.fail_after(5), pytest.raises(RateLimitError) as info:
                await client.create_video(*sb.add_track())
        assert info.value.retry_after is not None and info.value.retry_after > 5
        assert sb.stats.answers[429] == 1  # surfaced at once, no silent stall


async def test_submit_is_never_resent_when_the_server_may_have_taken_it(sandbox: Sandbox) -> None:
    sandbox.faults.submit_5xx_after_accept = 1.0
    track = sandbox.add_track()
    async with _client(sandbox, retry=RetryPolicy(attempts=5, initial_backoff=0.01)) as client:
        with pytest.raises(ServerError):
            await client.create_video(*track)
    assert sandbox.stats.submits[track] == 1


async def test_submit_is_resent_when_the_connection_was_refused() -> None:
    # A port with nothing listening: the request certainly never reached a server.
    async with Sandbox() as sb:
        dead_url = sb.base_url
    retry = RetryPolicy(attempts=3, initial_backoff=0.01)
    async with Client("k", base_url=dead_url, retry=retry) as client:
        with anyio.fail_after(10), pytest.raises(TransportError) as info:
            await client.create_video("t", "a")
        assert client._transport().sent["submit"] == 3  # every try, as none reached a server
    assert not info.value.sent


async def test_polls_survive_5xx_and_455(sandbox: Sandbox, client: Client) -> None:
    sandbox.faults.poll_5xx = 0.3
    sandbox.faults.poll_455 = 0.2
    tracks = [sandbox.add_track() for _ in range(10)]
    with anyio.fail_after(20):
        jobs = [await client.create_video(*t) for t in tracks]
        videos = [await j for j in jobs]
    assert [v.video_url for v in videos] == [sandbox.task(j.task_id).video_url for j in jobs]
    assert sandbox.stats.faults["poll_5xx"] + sandbox.stats.faults["poll_455"] > 0


async def test_a_stalled_server_makes_the_request_time_out(sandbox: Sandbox) -> None:
    sandbox.faults.stall = 1.0
    async with _client(
        sandbox, timeout=0.3, retry=RetryPolicy(attempts=2, initial_backoff=0.01)
    ) as c:
        start = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(TransportError, match="timed out"):
            await c.get_video_details("x")
        assert anyio.current_time() - start < 2


async def test_configured_rate_limit_is_never_exceeded() -> None:
    async with Sandbox(render_time=0.1, rate_limit=(5, 0.5)) as sb:
        tracks = [sb.add_track() for _ in range(12)]
        async with _client(sb, rate_limit=RateLimit(5, 0.5)) as client:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    for t in tracks:
                        tg.start_soon(client.create_video, *t)
        assert sb.stats.answers[429] == 0
        assert sum(sb.stats.submits.values()) == 12


@pytest.fixture
def far_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone far from UTC, so reading a zone-less time string as
    local time instead of UTC would show."""
    monkeypatch.setenv("TZ", "Asia/Kathmandu")  # UTC+05:45
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("time_format", ["ms", "string"])
async def test_the_sdk_reads_both_time_formats_of_the_sandbox_as_utc(
    time_format: Literal["ms", "string"], far_time_zone: None
) -> None:
    async with Sandbox(render_time=0, time_format=time_format) as sb, _client(sb) as client:
        with anyio.fail_after(10):
            job = await client.create_video(*sb.add_track())
            video = await job
            details = await client.get_video_details(job.task_id)
        record = sb.task(job.task_id)
    # Strings carry whole seconds (UTC, without a zone); milliseconds carry the rest.
    precision = 1.0 if time_format == "string" else 0.001
    times = ((details.completed_at, record.completed_at), (details.created_at, record.created_at))
    for read, sent in times:
        assert read is not None and sent is not None
        assert read.utcoffset() == timedelta(0)
        assert abs(read.timestamp() - sent) <= precision, (read, sent)
    assert video.completed_at == details.completed_at
