"""Downloads: exact bytes, progress, resume after a cut, expiry, flat memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from suno_mp4_sandbox import PlaceholderRenderer, Sandbox

from suno_mp4 import (
    Client,
    InvalidRequestError,
    MusicVideo,
    RateLimitError,
    RetryPolicy,
    TransportError,
    VideoExpiredError,
    VideoTooLargeError,
)

from .conftest import FAST_POLL, FAST_RETRY
from .hostile import serve_app

pytestmark = pytest.mark.anyio


async def _video(sb: Sandbox, client: Client) -> MusicVideo:
    with anyio.fail_after(20):
        return await (await client.create_video(*sb.add_track()))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_download_writes_the_exact_bytes_with_progress(tmp_path: Path) -> None:
    async with Sandbox(render_time=0.05, renderer=PlaceholderRenderer(size_bytes=3_000_000)) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL) as client:
            video = await _video(sb, client)
            seen: list[tuple[int, int | None]] = []
            path = await client.download(
                video, tmp_path / "clip.mp4", progress=lambda d, t: seen.append((d, t))
            )
        served = sb.task(video.task_id).video_path
        assert served is not None and _sha(path) == _sha(Path(served))
    assert path == tmp_path / "clip.mp4"
    assert seen[-1] == (3_000_000, 3_000_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert not list(tmp_path.glob(".*.part"))


async def test_download_into_a_folder_uses_the_url_file_name(tmp_path: Path) -> None:
    async with (
        Sandbox(render_time=0.05) as sb,
        Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL) as client,
    ):
        video = await _video(sb, client)
        path = await client.download(video.video_url, tmp_path)
    assert path.parent == tmp_path and video.video_url.endswith(path.name)


async def test_a_cut_download_resumes_with_range(tmp_path: Path) -> None:
    async with Sandbox(render_time=0.05, renderer=PlaceholderRenderer(size_bytes=2_000_000)) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL, retry=FAST_RETRY) as c:
            video = await _video(sb, c)
            sb.faults.download_reset = 1.0  # the first transfer is cut halfway
            progress: list[int] = []

            def on_progress(done: int, _total: int | None) -> None:
                progress.append(done)
                if done > 0:
                    sb.faults.download_reset = 0.0  # the retry may complete

            path = await c.download(video, tmp_path / "v.mp4", progress=on_progress)
        served = sb.task(video.task_id).video_path
        assert served is not None and _sha(path) == _sha(Path(served))
    assert sb.stats.faults["download_reset"] == 1
    assert sb.stats.requests["video"] == 2
    # Progress never went backwards: the second request resumed where the first was cut.
    assert progress == sorted(progress) and progress[-1] == 2_000_000


async def test_a_half_file_never_appears_under_the_final_name(tmp_path: Path) -> None:
    async with Sandbox(render_time=0.05, renderer=PlaceholderRenderer(size_bytes=1_000_000)) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL, retry=FAST_RETRY) as c:
            video = await _video(sb, c)
            sb.faults.download_reset = 1.0  # every attempt is cut
            with pytest.raises(Exception, match=r"(?i)payload|connection|ended|failed"):
                await c.download(video, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()
    assert (tmp_path / ".v.mp4.part").exists()  # kept, so a later call resumes


async def test_expired_video_raises_video_expired_error(tmp_path: Path) -> None:
    async with (
        Sandbox(render_time=0.05) as sb,
        Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL) as client,
    ):
        video = await _video(sb, client)
        sb.advance(days=15)
        with pytest.raises(VideoExpiredError, match="14 days"):
            await client.download(video.video_url, tmp_path / "late.mp4")
    assert not (tmp_path / "late.mp4").exists()


async def test_a_video_known_to_be_expired_is_refused_without_a_request(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    old = MusicVideo(
        task_id="t",
        video_url="http://127.0.0.1:9/never.mp4",
        completed_at=datetime.now(UTC) - timedelta(days=15),
    )
    async with Sandbox() as sb, Client(sb.api_key, base_url=sb.base_url) as client:
        with pytest.raises(VideoExpiredError, match="expired"):
            await client.download(old, tmp_path / "x.mp4")
        with pytest.raises(InvalidRequestError):
            await client.download("not-a-url", tmp_path / "x.mp4")


async def test_memory_stays_flat_for_a_200_mb_file(tmp_path: Path) -> None:
    size = 200 * 1024 * 1024
    async with Sandbox(render_time=0.05, renderer=PlaceholderRenderer(size_bytes=size)) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, poll=FAST_POLL) as client:
            video = await _video(sb, client)
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            with anyio.fail_after(120):
                path = await client.download(video, tmp_path / "big.mp4")
            peak = (tracemalloc.get_traced_memory()[1] - base) / 1e6
            tracemalloc.stop()
    assert path.stat().st_size == size
    print(f"\n200 MB download: peak Python memory {peak:.1f} MB above the start")
    assert peak < 20  # chunks stream through; the file never sits in memory


# A hostile file server: answers the sandbox cannot give.

_FILE = bytes(range(256)) * 8  # 2,048 bytes, no two 256-byte blocks' offsets alike


@pytest.fixture
async def files() -> Any:
    """A file server on 127.0.0.1 whose ``/f`` answers are scripted by ``script[n]`` (the
    n-th request), each a coroutine function of the request; ``hits`` counts requests."""
    state: dict[str, Any] = {"script": [], "hits": 0, "ranges": []}

    async def serve(request: web.Request) -> web.StreamResponse:
        n = state["hits"]
        state["hits"] += 1
        state["ranges"].append(request.headers.get("Range"))
        script = state["script"]
        handler = script[min(n, len(script) - 1)]
        result: web.StreamResponse = await handler(request)
        return result

    app = web.Application()
    app.router.add_get("/f/{name}", serve)
    async with serve_app(app) as base_url:
        state["url"] = f"{base_url}/f/v.mp4"
        yield state


async def _whole(_request: web.Request) -> web.StreamResponse:
    return web.Response(body=_FILE, content_type="video/mp4")


def _refuse(status: int, retry_after: str | None = None) -> Any:
    async def answer(_request: web.Request) -> web.StreamResponse:
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return web.Response(status=status, headers=headers, text="{}")

    return answer


async def _wrong_range(request: web.Request) -> web.StreamResponse:
    """A 206 for the bytes from 0 (not those asked for), of the length that was asked."""
    part = _FILE[: len(_FILE) - 1000]
    headers = {"Content-Range": f"bytes 0-{len(part) - 1}/{len(_FILE)}"}
    return web.Response(status=206, body=part, headers=headers)


async def _drip(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": "1000000"})
    await resp.prepare(request)
    for _ in range(10_000):
        await resp.write(b"x")
        await anyio.sleep(0.02)
    return resp


async def _to_bad_host(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("http://a..b/v.mp4")


def _client_for(files: dict[str, Any], **kw: Any) -> Client:
    retry = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05)
    return Client("k" * 20, base_url="http://127.0.0.1:9", retry=retry, **kw)


@pytest.mark.parametrize(
    "first", [_refuse(429, "0"), _refuse(455), _refuse(503)], ids=["429", "455", "503"]
)
async def test_a_download_refused_for_a_while_is_retried(
    files: dict[str, Any], tmp_path: Path, first: Any
) -> None:
    files["script"] = [first, _whole]
    async with _client_for(files) as client:
        with anyio.fail_after(10):
            path = await client.download(files["url"], tmp_path / "v.mp4")
    assert path.read_bytes() == _FILE and files["hits"] == 2


async def test_a_download_refused_for_longer_than_max_retry_after_raises(
    files: dict[str, Any], tmp_path: Path
) -> None:
    files["script"] = [_refuse(429, "100000"), _whole]
    async with _client_for(files) as client:
        with anyio.fail_after(10), pytest.raises(RateLimitError):
            await client.download(files["url"], tmp_path / "v.mp4")
    assert files["hits"] == 1


async def test_a_resumed_download_checks_the_range_it_was_given(
    files: dict[str, Any], tmp_path: Path
) -> None:
    # Appended, the wrong part would make a file of the right length with the wrong bytes.
    (tmp_path / ".v.mp4.part").write_bytes(_FILE[:1000])  # what an earlier, cut try kept
    files["script"] = [_wrong_range, _whole]
    async with _client_for(files) as client:
        with anyio.fail_after(10):
            path = await client.download(files["url"], tmp_path / "v.mp4")
    assert path.read_bytes() == _FILE
    assert files["ranges"] == ["bytes=1000-", None]


async def _short_part(request: web.Request) -> web.StreamResponse:
    """A 206 that starts where asked but ends early (bytes 1000-1499 of 2048)."""
    headers = {"Content-Range": f"bytes 1000-1499/{len(_FILE)}"}
    return web.Response(status=206, body=_FILE[1000:1500], headers=headers)


async def test_a_short_part_is_not_taken_for_the_whole_file(
    files: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / ".v.mp4.part").write_bytes(_FILE[:1000])
    files["script"] = [_short_part, _whole]
    async with _client_for(files) as client:
        with anyio.fail_after(10):
            path = await client.download(files["url"], tmp_path / "v.mp4")
    assert path.read_bytes() == _FILE
    assert files["ranges"] == ["bytes=1000-", "bytes=1500-"]


async def test_a_server_dripping_bytes_cannot_hold_a_download(
    files: dict[str, Any], tmp_path: Path
) -> None:
    files["script"] = [_drip]
    async with _client_for(files, timeout=0.3) as client:
        with anyio.fail_after(20), pytest.raises(TransportError, match="slower than"):
            await client.download(files["url"], tmp_path / "v.mp4")
    assert files["hits"] == 3  # each attempt cut, then the error


async def test_a_redirect_to_a_host_no_resolver_takes_is_a_typed_error(
    files: dict[str, Any], tmp_path: Path
) -> None:
    files["script"] = [_to_bad_host]
    async with _client_for(files) as client:
        with anyio.fail_after(10), pytest.raises(TransportError, match="host name"):
            await client.download(files["url"], tmp_path / "v.mp4")


async def _said_huge(request: web.Request) -> web.StreamResponse:
    """Headers announcing more than any video (a 200, or a 206 whose whole file is)."""
    if request.headers.get("Range"):
        headers = {"Content-Range": f"bytes 1000-1999/{5 * 1024**3}"}
        return web.Response(status=206, body=_FILE[1000:2000], headers=headers)
    resp = web.StreamResponse(headers={"Content-Length": str(5 * 1024**3)})
    await resp.prepare(request)
    await resp.write(_FILE)
    return resp


async def _endless(request: web.Request) -> web.StreamResponse:
    """No length said: bytes until the client stops reading."""
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(10_000):
        await resp.write(b"x" * 65536)
    return resp


@pytest.mark.parametrize("resumed", [False, True], ids=["whole", "resumed"])
async def test_a_video_said_to_be_too_large_is_refused_once_and_not_kept(
    files: dict[str, Any], tmp_path: Path, resumed: bool
) -> None:
    if resumed:
        (tmp_path / ".v.mp4.part").write_bytes(_FILE[:1000])
    files["script"] = [_said_huge, _whole]
    async with _client_for(files) as client:
        with anyio.fail_after(10), pytest.raises(VideoTooLargeError, match="5368709120 bytes"):
            await client.download(files["url"], tmp_path / "v.mp4")
    assert files["hits"] == 1  # no retry: a resume would be no smaller
    assert list(tmp_path.iterdir()) == []  # the part is gone, nothing under the name


async def test_a_body_growing_past_the_cap_is_cut_once_and_not_kept(
    files: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import suno_mp4._download

    monkeypatch.setattr(suno_mp4._download, "MAX_VIDEO_BYTES", 1024**2)
    files["script"] = [_endless, _whole]
    async with _client_for(files) as client:
        with anyio.fail_after(10), pytest.raises(VideoTooLargeError, match="over 1048576"):
            await client.download(files["url"], tmp_path / "v.mp4")
    assert files["hits"] == 1
    assert list(tmp_path.iterdir()) == []
