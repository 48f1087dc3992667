"""Hostile answers, callbacks and URLs: each cost at most the job they belong to.

A scripted server (tests/hostile.py) plays a compromised reseller; each test names the
attack it replays. The slowloris load on the listener is in test_slowloris.py, the
sandbox's own hostile-input tests in test_sandbox_hostile.py.
"""

from __future__ import annotations

import gc
import gzip
import json
import logging
import os
import sys
import tracemalloc
import uuid
import weakref
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from suno_mp4 import (
    AuthenticationError,
    CallbackListener,
    Client,
    ClientClosedError,
    InvalidRequestError,
    MusicVideo,
    PollPolicy,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SQLiteJobStore,
    VideoRequest,
)
from suno_mp4._clock import loop_time

from .hostile import KEY, Hostile, envelope, hostile_server, success

pytestmark = pytest.mark.anyio

FAST = PollPolicy(initial_delay=0.01, max_interval=0.05, max_wait=20)
NO_RETRY = RetryPolicy(attempts=1)
_SCRIPT = Path(sys.executable).with_name("suno-mp4")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suno_mp4.cli"]


@pytest.fixture
async def server() -> Any:
    async with hostile_server() as hostile:
        yield hostile


def _client(server: Hostile, **kw: Any) -> Client:
    kw.setdefault("poll", FAST)
    kw.setdefault("retry", NO_RETRY)
    return Client(KEY, base_url=server.base_url, **kw)


async def _cli(server: Hostile, *args: str) -> tuple[int, str, str]:
    env = dict(os.environ, APIKLEY_API_KEY=KEY, SUNO_MP4_BASE_URL=server.base_url)
    with anyio.fail_after(60):
        done = await anyio.run_process([*CLI, *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


# 1. Path traversal: names and paths are made by the SDK.


#: A fresh name each run (filled in by each test, so test ids stay stable), so that a file
#: left by a vulnerable version cannot make these pass or fail.
_ESCAPED = f"suno-mp4-escaped-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("task_id", ["../../{name}", "/tmp/{name}", "..", "a/../../b", "CON"])
async def test_batch_keeps_every_video_inside_out_dir_whatever_the_task_id(
    server: Hostile, tmp_path: Path, task_id: str
) -> None:
    task_id = task_id.format(name=_ESCAPED)
    server.submit = lambda _req: envelope({"taskId": task_id})
    server.details[task_id] = lambda _req: success(task_id, server.video_url("clip.mp4"))
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"task_id": "music-1", "audio_id": "audio-1"}) + "\n")
    out_dir = tmp_path / "deep" / "out"
    code, _, err = await _cli(server, "batch", str(source), "--out-dir", str(out_dir))
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".mp4"]
    assert len(written) == 1
    assert written[0].parent == out_dir
    assert not Path(f"/tmp/{_ESCAPED}.mp4").exists()


async def test_a_nul_in_a_task_id_fails_that_row_and_the_rerun_does_not_crash(
    server: Hostile, tmp_path: Path
) -> None:
    server.submit = lambda _req: envelope({"taskId": "bad\x00id"})
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"task_id": "music-1", "audio_id": "audio-1"}) + "\n")
    code, out, err = await _cli(server, "batch", str(source), "--out-dir", str(tmp_path))
    assert code == 1, err
    assert "Traceback" not in err and "failed 1" in out
    code, out, err = await _cli(server, "batch", str(source), "--out-dir", str(tmp_path))
    assert code in (0, 1) and "Traceback" not in err, err


@pytest.mark.parametrize(
    "segment",
    ["..%2F..%2F{name}.mp4", "%2Ftmp%2F{name}.mp4", "x%00y.mp4", "..%5C..%5Cz"],
)
async def test_download_into_a_folder_never_leaves_it(
    server: Hostile, tmp_path: Path, segment: str
) -> None:
    segment = segment.format(name=_ESCAPED)
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    victim = tmp_path / f"{_ESCAPED}.mp4"
    victim.write_bytes(b"precious")
    async with _client(server) as client:
        with anyio.fail_after(10):
            path = await client.download(server.video_url(segment), folder)
    assert path.parent == folder
    assert path.read_bytes() == server.video
    assert victim.read_bytes() == b"precious"
    assert not Path(f"/tmp/{_ESCAPED}.mp4").exists()


async def test_cli_download_by_task_id_keeps_the_file_in_the_folder(
    server: Hostile, tmp_path: Path
) -> None:
    server.details["v1"] = lambda _req: success("v1", server.video_url("..%2F..%2Fowned"))
    folder = tmp_path / "videos"
    folder.mkdir()
    code, out, err = await _cli(server, "download", "v1", str(folder))
    assert code == 0, err
    assert Path(out.strip()).parent == folder
    assert [p.parent for p in tmp_path.rglob("*owned*")] == [folder]


# 2. One job's bad data fails that job alone.


@pytest.mark.parametrize(
    "complete_time", ["9999-12-31 23:59:59", 253402300799000, -1e30, "0", 10**400, -(10**400)]
)
async def test_a_completion_time_out_of_range_never_kills_the_client(
    server: Hostile, complete_time: object
) -> None:
    url = server.video_url("ok.mp4")
    server.details["bad"] = lambda _req: success("bad", url, completeTime=complete_time)
    server.details["good"] = lambda _req: success("good", url)
    async with _client(server) as client:
        bad, good = client.job("bad"), client.job("good")
        with anyio.fail_after(10):
            video = await bad
            assert (await good).video_url == url
        assert video.expires_at > video.completed_at  # read as unknown: received time used
        assert (await client.get_video_details("good")).task_id == "good"  # still running


async def test_an_answer_that_breaks_the_parse_fails_its_job_alone(server: Hostile) -> None:
    url = server.video_url("ok.mp4")
    # A video URL that is no URL, and a "successFlag" that is an object.
    server.details["bad1"] = lambda _req: success("bad1", "javascript:alert(1)")
    server.details["bad2"] = lambda _req: envelope({"successFlag": {"x": [1]}, "videoUrl": 5})
    server.details["good"] = lambda _req: success("good", url)
    async with _client(server, poll=PollPolicy(initial_delay=0.01, max_wait=2)) as client:
        jobs = [client.job(t) for t in ("bad1", "bad2", "good")]
        with anyio.fail_after(10):
            with pytest.raises(ServerError, match="unusable"):
                await jobs[0]
            with pytest.raises(Exception) as info:
                await jobs[1]
            assert isinstance(info.value, ServerError | TimeoutError)
            assert (await jobs[2]).video_url == url


async def test_an_answer_about_another_task_never_resolves_that_task(server: Hostile) -> None:
    url = server.video_url("ok.mp4")
    server.details["mine"] = lambda _req: success("theirs", url)  # lies about the task id
    async with _client(server) as client:
        theirs = client.job("theirs")
        mine = client.job("mine")
        with anyio.fail_after(10):
            assert (await mine).task_id == "mine"
        assert not theirs.done()


async def test_a_deeply_nested_answer_fails_one_batch_item_not_the_batch(server: Hostile) -> None:
    bomb = b"[" * 200_000 + b"]" * 200_000
    calls = 0

    def submit(_req: web.Request) -> dict[str, Any] | bytes:
        nonlocal calls
        calls += 1
        return bomb if calls == 2 else envelope({"taskId": f"v{calls}"})

    server.submit = submit
    for i in (1, 3):
        server.details[f"v{i}"] = lambda _req, i=i: success(f"v{i}", server.video_url(f"{i}.mp4"))
    requests = [VideoRequest(f"m{i}", f"a{i}") for i in range(3)]
    async with _client(server) as client:
        with anyio.fail_after(20):
            results = [r async for r in client.create_videos(requests, max_in_flight=1)]
    assert len(results) == 3
    assert [r.ok for r in results].count(True) == 2
    assert [type(r.error) for r in results if not r.ok] == [ServerError]


# 3. Bounded reads.


def _gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * (1024 * 1024)
    parts = [packer.compress(b"{")]
    parts += [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, packer.compress(b"}"), packer.flush()])


_BOMB = _gzip_bomb(500 * 1024 * 1024)  # ~0.5 MB on the wire, 500 MB unpacked


@pytest.mark.parametrize("kind", ["gzip bomb", "100 MB plain", "100 MB chunked"])
async def test_an_oversized_answer_is_a_typed_error_within_bounded_memory(
    server: Hostile, kind: str
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        if kind == "gzip bomb":
            return web.Response(
                body=_BOMB, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        resp = web.StreamResponse()
        if kind == "100 MB plain":
            resp.content_length = 100 * 1024 * 1024
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b" " * (1024 * 1024)
        try:
            for _ in range(100):
                await resp.write(chunk)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the client hung up: that is the point
        return resp

    server.details["big"] = huge
    tracemalloc.start()
    try:
        async with _client(server) as client:
            with anyio.fail_after(30), pytest.raises(ServerError, match=r"larger than|more than"):
                await client.get_video_details("big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


# 5. User code errors are isolated.


async def test_a_raising_done_callback_harms_nothing_else(
    server: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.video_url("ok.mp4")
    for task in ("a", "b"):
        server.details[task] = lambda _req, task=task: success(task, url)
    seen: list[str] = []
    async with _client(server) as client:
        a, b = client.job("a"), client.job("b")

        def boom(job: Any) -> None:
            raise RuntimeError("user bug")

        a.add_done_callback(boom)
        a.add_done_callback(lambda job: seen.append(job.task_id))
        with anyio.fail_after(10):
            assert (await a).task_id == "a"
            assert (await b).task_id == "b"
        assert seen == ["a"]
        await client.get_video_details("a")  # the client still runs
    assert any("user bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_aclose_from_another_task_closes_cleanly(server: Hostile) -> None:
    client = _client(server)
    outcome: list[BaseException] = []
    async with client:
        job = client.job("never-done")

        async def waiter() -> None:
            try:
                await job
            except ClientClosedError as exc:
                outcome.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(client.aclose)  # another task than the one inside `async with`
    assert len(outcome) == 1
    with pytest.raises(ClientClosedError):
        client.job("x")


@pytest.mark.parametrize(
    "url",
    [
        "http://a..b/x.mp4",
        f"http://{'a' * 64}.example/x.mp4",
        "http://x.example/\udc80",
        "http://exa\u200dmple.com/x.mp4",  # the resolver drops it; aiohttp refuses it
        "http://ex\u00adample.com/x.mp4",
    ],
)
async def test_a_video_url_no_resolver_or_store_takes_fails_its_job_alone(
    server: Hostile, url: str
) -> None:
    good_url = server.video_url("ok.mp4")
    server.details["bad"] = lambda _req: success("bad", url)
    server.details["good"] = lambda _req: success("good", good_url)
    async with _client(server) as client:
        bad, good = client.job("bad"), client.job("good")
        with anyio.fail_after(10):
            with pytest.raises(ServerError, match="unusable"):
                await bad
            assert (await good).video_url == good_url


def _throttled(retry_after: str) -> web.Response:
    return web.json_response(
        envelope(None, code=429, msg="slow down"), status=429, headers={"Retry-After": retry_after}
    )


async def test_a_number_out_of_float_range_in_a_taken_submit_keeps_its_job(
    server: Hostile,
) -> None:
    # A field nobody reads must not make the answer to a paid submit look like no answer.
    server.submit = lambda _req: (
        b'{"code": 200, "msg": "ok", "data": {"taskId": "v1", "cost": 1e999}}'
    )
    async with _client(server) as client:
        with anyio.fail_after(10):
            job = await client.create_video("track-1", "audio-1")
        assert job.task_id == "v1"
        assert await client.unknown_submissions() == []


async def test_a_retry_after_no_clock_can_read_leaves_a_refused_submit_refused(
    server: Hostile,
) -> None:
    server.submit = lambda _req: _throttled("Mon, 01 Jan 2020 00:00:00 +99999999999999999999")
    retry = RetryPolicy(attempts=1, max_throttle_wait=0)
    async with _client(server, retry=retry) as client:
        with anyio.fail_after(10), pytest.raises(RateLimitError):
            await client.create_video("track-1", "audio-1")
        assert await client.unknown_submissions() == []  # certainly not taken: not in doubt
        with pytest.raises(RateLimitError):
            await client.create_video("track-1", "audio-1")  # may be sent again
    assert server.submits >= 2


async def test_a_poll_told_to_wait_past_max_wait_fails_its_job_instead_of_stalling(
    server: Hostile,
) -> None:
    server.details["slow"] = lambda _req: _throttled("100000")
    server.details["good"] = lambda _req: success("good", server.video_url("ok.mp4"))
    retry = RetryPolicy(attempts=1, max_retry_after=0.5)  # the client-wide pause it takes
    poll = PollPolicy(initial_delay=0.01, max_wait=3600)
    async with _client(server, poll=poll, retry=retry) as client:
        slow, good = client.job("slow"), client.job("good")
        with anyio.fail_after(10):
            with pytest.raises(RateLimitError) as info:
                await slow
            await good
    assert info.value.retry_after == 100000


async def test_a_long_pause_asked_by_a_poll_pauses_the_client_and_fails_no_job(
    server: Hostile,
) -> None:
    # Within max_wait: the jobs wait as asked; the pause is client-wide (up to
    # max_retry_after at a time), so the other polls do not all go into the same refusal.
    refused = anyio.Event()

    def throttled(_req: web.Request) -> web.Response:
        refused.set()
        return _throttled("300")

    for name in ("a", "b", "c"):
        server.details[name] = throttled
    async with _client(server, poll=PollPolicy(initial_delay=0.01, max_wait=3600)) as client:
        jobs = [client.job(name) for name in ("a", "b", "c")]
        with anyio.fail_after(10):
            await refused.wait()
            await anyio.wait_all_tasks_blocked()
        limiter = client._transport().limiter
        assert limiter._paused_until - loop_time() > 60  # 120 s (max_retry_after) from then
        assert not any(job.done() for job in jobs)
        assert server.polls <= 3


# 6. Other edges.


async def test_a_callback_with_envelope_code_0_is_a_success(server: Hostile) -> None:
    listener = CallbackListener()
    slow = PollPolicy(initial_delay=60, fallback_interval=60, max_wait=60)
    async with _client(server, callbacks=listener, poll=slow) as client:
        job = await client.create_video("m", "a")
        body = {"code": 0, "msg": "ok", "data": {"task_id": job.task_id, "video_url": "http://x/v"}}
        async with aiohttp.ClientSession() as http:
            async with http.post(listener.callback_url, json=body) as resp:
                assert resp.status == 200
        with anyio.fail_after(5):
            video = await job
    assert video.video_url == "http://x/v" and job.resolved_by == "callback"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000])
async def test_the_listener_answers_deep_json_with_400(server: Hostile, body: bytes) -> None:
    listener = CallbackListener()
    async with _client(server, callbacks=listener):
        async with aiohttp.ClientSession() as http:
            async with http.post(listener.callback_url, data=body) as resp:
                assert resp.status == 400


async def test_the_listener_refuses_compressed_callbacks(server: Hostile) -> None:
    listener = CallbackListener()
    async with _client(server, callbacks=listener):
        body = gzip.compress(b'{"code": 200, "msg": "x", "data": {"task_id": "t"}}')
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            async with http.post(listener.callback_url, data=body, headers=headers) as resp:
                assert resp.status == 415


async def test_an_echoed_key_is_masked_in_errors_cli_output_and_stores(
    server: Hostile, tmp_path: Path
) -> None:
    server.submit = lambda _req: envelope(None, 401, f"bad key {KEY} \x1b[31mred\x1b[0m")
    store = SQLiteJobStore(tmp_path / "jobs.db")
    async with _client(server, store=store) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create_video("m", "a")
    assert KEY not in str(info.value) and KEY not in info.value.msg
    assert "\x1b" not in str(info.value)
    await store.aclose()
    assert KEY.encode() not in (tmp_path / "jobs.db").read_bytes()
    code, out, err = await _cli(server, "create", "m", "a")
    assert code == 3
    assert KEY not in out + err and "\x1b" not in out + err
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"task_id": "m", "audio_id": "a"}) + "\n")
    code, out, err = await _cli(server, "batch", str(source), "--out-dir", str(tmp_path / "o"))
    manifest = (tmp_path / "o" / "manifest.jsonl").read_text()
    assert KEY not in out + err + manifest and "\x1b" not in out + err + manifest


async def test_control_characters_from_the_server_never_reach_the_terminal(
    server: Hostile,
) -> None:
    evil = "\x1b]0;owned\x07\x1b[2J\u202eevil"
    server.details["v1"] = lambda _req: envelope(
        {"taskId": "v1", "successFlag": "GENERATE_MP4_FAILED", "errorMessage": evil}
    )
    for args in (["status", "v1"], ["wait", "v1"], ["status", "v1", "--json"]):
        _, out, err = await _cli(server, *args)
        assert "\x1b" not in out + err and "\u202e" not in out + err, args


async def test_a_huge_task_id_from_the_server_is_refused_and_never_logged_whole(
    server: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    server.submit = lambda _req: envelope({"taskId": "x" * 300_000})
    caplog.set_level(logging.DEBUG, logger="suno_mp4")
    async with _client(server) as client:
        with pytest.raises(ServerError) as info:
            await client.create_video("m", "a")
    assert len(str(info.value)) < 2500
    assert all(len(r.getMessage()) < 5000 for r in caplog.records)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"store": "jobs.db"},
        {"callback_url": "http://"},
        {"callback_url": "http://host with space/"},
        {"base_url": "ftp://example.org"},
        {"timeout": "3"},
        {"timeout": float("nan")},
        {"max_connections": 1.5},
        {"poll": {"initial_delay": 1}},
        {"retry": 3},
        {"rate_limit": 5},
        {"callbacks": "127.0.0.1:8080"},
        {"relay": object()},
        {"codes": [400]},
        {"seed": "abc"},
        {"on_claim": 3},
        {"max_response_bytes": -1},
        # Each of these was taken, then failed inside aiohttp at the first submit, after
        # its write-ahead record: the key was left in doubt with nothing sent.
        {"timeout": float("inf")},
        {"timeout": 10**400},
        {"base_url": "http://user:pw@127.0.0.1:9"},
        {"base_url": "http://127.0.0.1:9/?region=eu"},  # the paths would go in the query
        {"base_url": "http://127.0.0.1:9/#frag"},
        {"api_key": "sk-abc\nX-Other: 1"},
        {"api_key": "sk abc"},
        {"api_key": "sk\x00abc"},
    ],
)
def test_wrong_client_arguments_raise_invalid_request_error(kwargs: dict[str, Any]) -> None:
    key = kwargs.pop("api_key", "key")
    with pytest.raises(InvalidRequestError) as info:
        Client(key, **kwargs)
    assert "abc" not in str(info.value)  # a key is never echoed


@pytest.mark.parametrize(
    "limit",
    [
        {"per_seconds": float("inf")},
        {"per_seconds": 10**400},  # no float holds it: the limiter's sums would overflow
        {"per_seconds": "1"},
        {"margin": float("nan")},
        {"margin": 10**400},
        {"requests": True},
        {"requests": 10**12},
    ],
)
def test_a_rate_limit_that_would_wait_forever_is_refused(limit: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        RateLimit(**{"requests": 1, **limit})


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_video(123, "a"),
        lambda c: c.create_video("t", "a", author=5),
        lambda c: c.create_video("t\x00", "a"),
        lambda c: c.create_video("t", "a", callback_url="http://"),
        lambda c: c.submit(VideoRequest("t", "a"), key=5),
        lambda c: c.download(
            MusicVideo("t", "http://127.0.0.1:1/v", __import__("datetime").datetime.now()), 5
        ),
        lambda c: c.get_video_details("x" * 1000),
    ],
)
async def test_wrong_call_arguments_raise_invalid_request_error(server: Hostile, call: Any) -> None:
    async with _client(server) as client:
        with pytest.raises(InvalidRequestError):
            await call(client)
    assert server.submits == 0


@pytest.mark.parametrize(
    "call", [lambda c: c.job(""), lambda c: c.create_videos([], max_in_flight="3")]
)
async def test_wrong_sync_call_arguments_raise_invalid_request_error(
    server: Hostile, call: Any
) -> None:
    async with _client(server) as client:
        with pytest.raises(InvalidRequestError):
            call(client)


async def test_jobs_whose_waiters_all_left_are_released(server: Hostile) -> None:
    forever = PollPolicy(initial_delay=0.01, max_interval=0.05, max_wait=None)
    async with _client(server, poll=forever) as client:
        refs: weakref.WeakSet[Any] = weakref.WeakSet()
        for i in range(3000):
            job = client.job(f"pending-{i}")
            refs.add(job)
            with anyio.move_on_after(0):
                await job  # cancelled at once: the only waiter leaves
        del job
        assert len(client._registry) == 0
        assert len(client._poller) == 0  # the heap dropped their entries too
        # Polls already on the wire hold their job until the answer: no event says when the
        # last one ended, so look again until none is left (or fail).
        with anyio.fail_after(5):
            while gc.collect() is not None and len(refs) > 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # Waiting again re-attaches: a job resolved later is still seen.
        again = client.job("pending-0")
        server.details["pending-0"] = lambda _req: success("pending-0", server.video_url("x"))
        with anyio.fail_after(10):
            assert (await again).task_id == "pending-0"


@pytest.mark.parametrize("enveloped", [True, False], ids=["api-404", "proxy-404"])
async def test_a_404_ends_a_job_for_good_only_in_the_apis_own_words(
    server: Hostile, enveloped: bool
) -> None:
    # A proxy's bare 404 page says nothing about the task: its record stays resumable.
    from suno_mp4 import JobState, NotFoundError

    def not_found(_req: web.Request) -> web.Response:
        if enveloped:
            return web.json_response(envelope(None, code=404, msg="no such task"))
        return web.Response(status=404, text="<html>404 Not Found</html>")

    server.submit = lambda _req: envelope({"taskId": "gone"})
    server.details["gone"] = not_found
    async with _client(server) as client:
        job = await client.create_video("track-1", "audio-1")
        with anyio.fail_after(10), pytest.raises(NotFoundError):
            await job
        await anyio.wait_all_tasks_blocked()
        assert job.request is not None
        record = await client.store.get(job.request.key)
    assert record is not None
    assert record.state is (JobState.FAILED if enveloped else JobState.SUBMITTED)


async def test_a_job_without_max_wait_told_to_wait_forever_fails_instead(
    server: Hostile,
) -> None:
    server.details["slow"] = lambda _req: _throttled("inf")
    retry = RetryPolicy(attempts=1, max_retry_after=0.5)
    async with _client(
        server, poll=PollPolicy(initial_delay=0.01, max_wait=None), retry=retry
    ) as c:
        with anyio.fail_after(10), pytest.raises(RateLimitError):
            await c.job("slow")


# A submit the server took is never read as refused (it would be sent again and billed).


def _taken(status: int, body: dict[str, Any]) -> Any:
    return lambda _req: web.json_response(body, status=status)


@pytest.mark.parametrize(
    "answer",
    [
        _taken(404, envelope({"taskId": "vid-1"})),  # a success envelope in an HTTP error
        _taken(422, envelope({"taskId": "vid-1"})),
        _taken(200, {"code": "200", "msg": "ok", "data": {"taskId": "vid-1"}}),
        _taken(200, {"code": 200.0, "msg": "ok", "data": {"taskId": "vid-1"}}),
        _taken(200, envelope({"task_id": "vid-1"})),
    ],
    ids=["success-in-404", "success-in-422", "code-as-text", "code-as-float", "task_id"],
)
async def test_a_taken_submit_in_another_shape_keeps_its_job(server: Hostile, answer: Any) -> None:
    server.submit = answer
    server.details["vid-1"] = lambda _req: success("vid-1", server.video_url("a.mp4"))
    async with _client(server) as client:
        job = await client.create_video("music-1", "audio-1")
        again = await client.create_video("music-1", "audio-1")
        with anyio.fail_after(10):
            video = await job
    assert job.task_id == again.task_id == video.task_id == "vid-1"
    assert server.submits == 1


async def test_a_number_for_a_task_id_is_taken_as_its_text(server: Hostile) -> None:
    server.submit = lambda _req: envelope({"taskId": 12345})
    async with _client(server) as client:
        job = await client.create_video("music-1", "audio-1")
    assert job.task_id == "12345"


async def test_an_unknown_error_code_on_a_submit_is_in_doubt_not_refused(server: Hostile) -> None:
    from suno_mp4 import APIError, SubmissionInDoubtError

    server.submit = lambda _req: envelope(None, 418, "who knows")
    async with _client(server) as client:
        with pytest.raises(APIError) as info:
            await client.create_video("music-1", "audio-1")
        assert type(info.value) is APIError and info.value.code == 418
        with pytest.raises(SubmissionInDoubtError):
            await client.create_video("music-1", "audio-1")  # never sent again by itself
    assert server.submits == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("body", [b"", b'{"code": 500, "msg": "oops"}'], ids=["bare", "envelope"])
async def test_a_redirected_submit_is_in_doubt_and_names_where_base_url_points(
    server: Hostile, status: int, body: bytes
) -> None:
    from suno_mp4 import APIError, SubmissionInDoubtError

    # Requests do not follow redirects; whether the POST was handled first (a 303 says so,
    # a proxy may pass an origin's redirect on) is unknown: never sent again by itself.
    moved = "https://api.example.invalid/new"
    server.submit = lambda _req: web.Response(status=status, body=body, headers={"Location": moved})
    async with _client(server) as client:
        with pytest.raises(APIError) as info:
            await client.create_video("music-1", "audio-1")
        if not body:
            assert f"HTTP {status}, a redirect to {moved}" in str(info.value)
        server.submit = lambda _req: envelope({"taskId": "vid-1"})
        with pytest.raises(SubmissionInDoubtError):
            await client.create_video("music-1", "audio-1")
    assert server.submits == 1


async def test_a_gateways_bare_page_means_what_http_says_whatever_the_code_table(
    server: Hostile,
) -> None:
    from suno_mp4 import ALT_RESELLER_CODES, RateLimitError

    # In this reseller's table 429 means "no credits" (not retried, "top up"); a gateway's
    # own 429 page means "too many requests".
    server.submit = lambda _req: web.Response(status=429, text="Too Many Requests")
    retry = RetryPolicy(attempts=1, max_throttle_wait=0)
    async with _client(server, codes=ALT_RESELLER_CODES, retry=retry) as client:
        with anyio.fail_after(10), pytest.raises(RateLimitError):
            await client.create_video("music-1", "audio-1")


@pytest.mark.parametrize("flag", [1, True, ["done"]])
async def test_a_flag_that_is_no_text_beside_a_video_url_is_a_success(
    server: Hostile, flag: object
) -> None:
    server.submit = lambda _req: envelope({"taskId": "vid-1"})
    url = server.video_url("a.mp4")
    server.details["vid-1"] = lambda _req: envelope(
        {"taskId": "vid-1", "successFlag": flag, "response": {"videoUrl": url}}
    )
    async with _client(server) as client:
        job = await client.create_video("music-1", "audio-1")
        with anyio.fail_after(10):
            assert (await job).video_url == url


async def test_a_plain_http_base_url_to_another_machine_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 192.0.2.1 (TEST-NET-1) is never contacted: nothing is sent here.
    async with (
        Client(KEY, base_url="http://192.0.2.1:9"),
        Client(KEY, base_url="HTTP://192.0.2.2:9"),  # a scheme's case means nothing
        Client(KEY, base_url="http://127.0.0.1:9"),
    ):
        pass
    warned = [r.getMessage() for r in caplog.records if "unencrypted" in r.getMessage()]
    assert len(warned) == 2 and "192.0.2.1" in warned[0] and "192.0.2.2" in warned[1]
    assert not any(KEY in line for line in warned)


@pytest.mark.parametrize("code", [429, 455])
async def test_a_submit_stopped_while_waiting_to_retry_a_refusal_is_rejected_not_in_doubt(
    server: Hostile, code: int
) -> None:
    from suno_mp4 import SubmissionInDoubtError

    # Every answer a certain refusal: cancelled while it waits to retry (a Ctrl-C, a batch
    # left, a deadline), nothing was taken, so a later call sends it.
    refusal = envelope(None, code, "refused")
    server.submit = lambda _req: web.json_response(refusal, headers={"Retry-After": "5"})
    retry = RetryPolicy(attempts=6, initial_backoff=5, max_backoff=5)
    async with _client(server, retry=retry) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.create_video("music-1", "audio-1")
        assert scope.cancelled_caught and server.submits >= 1
        refused = server.submits
        server.submit = lambda _req: envelope({"taskId": "vid-1"})
        try:
            job = await client.create_video("music-1", "audio-1")
        except SubmissionInDoubtError:
            pytest.fail("a submit every answer refused was recorded in doubt")
    assert job.task_id == "vid-1" and server.submits == refused + 1


async def test_resume_leaves_a_live_submit_of_another_client_alone(server: Hostile) -> None:
    from suno_mp4 import MemoryJobStore

    # Two clients share a store; one resumes while the other's submit waits for its answer.
    answer = anyio.Event()
    asked = anyio.Event()

    async def slow(_req: Any) -> Any:
        asked.set()
        await answer.wait()
        return envelope({"taskId": "vid-1"})

    server.submit = slow
    store = MemoryJobStore()
    async with _client(server, store=store) as first, _client(server, store=store) as second:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.create_video, "music-1", "audio-1")
            with anyio.fail_after(5):
                await asked.wait()
            try:
                resumed = [job async for job in second.resume()]  # the submit is on the wire
                (live,) = await store.all()
            finally:
                answer.set()
        # Left as it is: marked unknown meanwhile, a write racing its answer could lose it.
        assert live.state.value == "submitting"
        assert resumed == [] and await second.unknown_submissions() == []
        records = await store.all()
        assert [(r.state.value, r.task_id) for r in records] == [("submitted", "vid-1")]
