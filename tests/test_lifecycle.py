"""The client's life and the caller's mistakes: a failing batch input, a close while
requests wait or a download streams, a callback that raises, a second event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from suno_mp4_sandbox import Sandbox

from suno_mp4 import (
    Client,
    ClientClosedError,
    InvalidRequestError,
    RateLimit,
    VideoRequest,
)

from .conftest import FAST_RETRY
from .hostile import serve_app
from .test_client import _client

pytestmark = pytest.mark.anyio


async def test_a_batch_whose_input_fails_yields_what_it_began_then_raises_and_the_client_lives(
    sandbox: Sandbox,
) -> None:
    tracks = [sandbox.add_track() for _ in range(4)]

    async def requests() -> AsyncIterator[VideoRequest]:
        for track in tracks[:3]:
            yield VideoRequest(*track)
        raise ValueError("the spreadsheet ended badly")

    async with _client(sandbox) as client:
        results = []
        with anyio.fail_after(20), pytest.raises(ValueError, match="spreadsheet"):
            async for result in client.create_videos(requests()):
                results.append(result)
        assert sorted(r.request.task_id for r in results if r.ok) == sorted(
            t[0] for t in tracks[:3]
        )
        with anyio.fail_after(20):  # the client still works
            await (await client.create_video(*tracks[3]))
        # From a list (read 256 at a time): the items before a wrong one, or before the
        # input failed, are begun and yielded all the same.
        more = [sandbox.add_track() for _ in range(4)]
        with anyio.fail_after(20), pytest.raises(InvalidRequestError, match="VideoRequest"):
            async for result in client.create_videos([VideoRequest(*more[0]), ("t", "a")]):  # type: ignore[list-item]
                assert result.ok

        def failing() -> Iterator[VideoRequest]:
            yield from (VideoRequest(*track) for track in more[1:])
            raise ValueError("the file ended badly")

        done = []
        with anyio.fail_after(20), pytest.raises(ValueError, match="ended badly"):
            async for result in client.create_videos(failing()):
                done.append(result)
        assert sorted(r.request.task_id for r in done if r.ok) == sorted(t[0] for t in more[1:])
    assert sorted(sandbox.stats.submits.values()) == [1] * 8


async def test_requests_waiting_for_the_limiter_when_the_client_closes_are_not_in_doubt(
    sandbox: Sandbox,
) -> None:
    tracks = [sandbox.add_track() for _ in range(6)]
    errors: list[BaseException] = []
    async with _client(sandbox, rate_limit=RateLimit(2, 1.0)) as client:

        async def submit(track: tuple[str, str]) -> None:
            try:
                await client.create_video(*track)
            except Exception as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            for track in tracks[:2]:  # the limit's two permits: used for a second now
                await client.create_video(*track)
        async with anyio.create_task_group() as tg:
            for track in tracks[2:]:
                tg.start_soon(submit, track)
            await anyio.wait_all_tasks_blocked()  # the other four wait for the limiter
            await client.aclose()
    assert len(errors) == 4, errors
    assert all(isinstance(e, ClientClosedError) and e.sent is False for e in errors), errors
    assert await client.unknown_submissions() == []
    assert sandbox.stats.submits_accepted == 2


async def test_a_download_under_way_ends_when_the_client_closes(tmp_path: Path) -> None:
    started = anyio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(10**6)})
        await resp.prepare(request)
        for _ in range(10_000):
            await resp.write(b"x" * 2048)
            started.set()
            await anyio.sleep(0.01)
        return resp

    app = web.Application()
    app.router.add_get("/v.mp4", slow)
    async with serve_app(app) as base_url:
        url = f"{base_url}/v.mp4"
        async with Client("k" * 20, base_url="http://127.0.0.1:9", retry=FAST_RETRY) as client:
            outcome: list[BaseException] = []

            async def download() -> None:
                try:
                    await client.download(url, tmp_path / "v.mp4")
                except BaseException as exc:
                    outcome.append(exc)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(download)
                    await started.wait()
                    await client.aclose()
        assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError), outcome
        assert not (tmp_path / "v.mp4").exists()


async def test_a_done_callback_raising_cancelled_error_stops_nothing(sandbox: Sandbox) -> None:
    def rude(_job: object) -> None:
        raise asyncio.CancelledError

    async with _client(sandbox) as client:
        first = await client.create_video(*sandbox.add_track())
        first.add_done_callback(rude)
        with anyio.fail_after(20):
            await first
            second = await client.create_video(*sandbox.add_track())
            second.add_done_callback(rude)
            await second  # still polled: the poller survived the first callback


async def test_a_client_used_from_another_event_loop_says_so_and_poisons_nothing(
    sandbox: Sandbox,
) -> None:
    track = sandbox.add_track()
    async with _client(sandbox) as client:
        caught: list[BaseException] = []

        def elsewhere() -> None:
            try:
                asyncio.run(client.create_video(*track))
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        assert len(caught) == 1 and isinstance(caught[0], ClientClosedError), caught
        assert "another event loop" in str(caught[0])
        with anyio.fail_after(20):
            await (await client.create_video(*track))  # not in doubt: nothing was written
    assert sandbox.stats.submits[track] == 1


async def test_a_wait_with_a_timeout_that_is_no_number_is_an_invalid_request(
    sandbox: Sandbox,
) -> None:
    async with _client(sandbox) as client:
        job = await client.create_video(*sandbox.add_track())
        with pytest.raises(InvalidRequestError, match="timeout"):
            await job.wait("5")  # type: ignore[arg-type]


async def test_an_async_done_callback_is_refused_not_silently_dropped(sandbox: Sandbox) -> None:
    async def never_awaited(_job: object) -> None:
        raise AssertionError("a done callback is not awaited")

    async with _client(sandbox) as client:
        job = await client.create_video(*sandbox.add_track())
        with pytest.raises(InvalidRequestError, match="plain function"):
            job.add_done_callback(never_awaited)


async def test_a_batch_whose_client_closes_under_it_says_so() -> None:
    # Not a quiet end of the loop, which would read as "all done".
    async with Sandbox(render_time=30) as sb:
        await _close_under_a_batch(sb)


async def _close_under_a_batch(sandbox: Sandbox) -> None:
    requests = [VideoRequest(*sandbox.add_track()) for _ in range(3)]
    async with _client(sandbox) as client:
        batch = client.create_videos(requests)

        async def consume() -> None:
            with pytest.raises(ClientClosedError, match="batch"):
                async for _ in batch:
                    pass

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()  # the batch waits for its renders
                await client.aclose()
