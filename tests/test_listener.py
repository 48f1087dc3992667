"""The callback listener: own port, attach to a host app, secrets, signatures, bad bodies."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from aiohttp import web
from suno_mp4_sandbox import Faults, Sandbox

from suno_mp4 import CallbackListener, Client, JobState, PollPolicy, VideoGenerationError
from suno_mp4._callbacks import sign

from .conftest import FAST_RETRY

pytestmark = pytest.mark.anyio

#: Listener mode: the safety poll is far away, so a callback is what resolves jobs.
SLOW_SAFETY = PollPolicy(initial_delay=0.05, max_interval=0.3, fallback_interval=30, max_wait=60)


def _client(sb: Sandbox, listener: CallbackListener, **kw: object) -> Client:
    options: dict[str, object] = {"poll": SLOW_SAFETY, "retry": FAST_RETRY, "seed": 5}
    options.update(kw)
    return Client(sb.api_key, base_url=sb.base_url, callbacks=listener, **options)  # type: ignore[arg-type]


async def test_listener_mode_resolves_on_the_callback_without_polling(sandbox: Sandbox) -> None:
    listener = CallbackListener()
    async with _client(sandbox, listener) as client:
        jobs = [await client.create_video(*sandbox.add_track()) for _ in range(5)]
        with anyio.fail_after(10):
            videos = [await job for job in jobs]
        assert listener.callback_url.startswith(f"http://127.0.0.1:{listener.port}/suno-mp4/")
    assert [j.resolved_by for j in jobs] == ["callback"] * 5
    assert [j.polls for j in jobs] == [0] * 5
    assert sum(sandbox.stats.polls.values()) == 0
    assert [v.video_url for v in videos] == [sandbox.task(j.task_id).video_url for j in jobs]


async def test_callback_before_submit_response_resolves_job() -> None:
    async with Sandbox(render_time=0.1, faults=Faults(callback_early=1.0)) as sb:
        async with _client(sb, CallbackListener()) as client:
            job = await client.create_video(*sb.add_track())
            # The callback was delivered before create_video returned: already buffered.
            with anyio.fail_after(5):
                video = await job
            assert job.request is not None  # its result is in the job store too
            record = await client.store.get(job.request.key)
    assert sb.stats.callbacks_early >= 1
    assert job.resolved_by == "callback" and job.polls == 0
    assert video.video_url == sb.task(job.task_id).video_url
    assert record is not None and record.state is JobState.DONE and record.video == video


async def test_duplicate_callbacks_resolve_once(sandbox: Sandbox) -> None:
    sandbox.faults.callback_duplicate = 1.0
    listener = CallbackListener()
    async with _client(sandbox, listener) as client:
        job = await client.create_video(*sandbox.add_track())
        with anyio.fail_after(5):
            first = await job
            # A late copy (as a sender's retry would be) changes nothing, and is not buffered.
            body = _body(job.task_id)
            assert await _post(listener.callback_url, body) == 200
    assert job.result() == first and first.video_url != "http://evil/x.mp4"
    assert client._registry.stats["resolved"] == 1
    assert client._registry.stats["ignored"] >= 1
    assert client._registry.early_count == 0
    assert sandbox.stats.callbacks_duplicated >= 1


async def test_lost_callback_only_delays_through_the_safety_poll(sandbox: Sandbox) -> None:
    sandbox.faults.callback_drop = 1.0
    poll = PollPolicy(initial_delay=0.05, fallback_interval=0.3, max_wait=60)
    async with _client(sandbox, CallbackListener(), poll=poll) as client:
        job = await client.create_video(*sandbox.add_track())
        start = anyio.current_time()
        with anyio.fail_after(5):
            await job
        assert anyio.current_time() - start >= 0.2  # not before the safety poll
    assert job.resolved_by == "poll"


async def test_failure_callback_raises_video_generation_error(sandbox: Sandbox) -> None:
    async with _client(sandbox, CallbackListener()) as client:
        job = await client.create_video(*sandbox.add_track(fail="bad audio"))
        with anyio.fail_after(5), pytest.raises(VideoGenerationError) as info:
            await job
    assert job.resolved_by == "callback"
    assert info.value.error_code == 500 and "bad audio" in (info.value.error_message or "")


async def test_signed_callbacks_verify_with_hmac_key() -> None:
    async with Sandbox(render_time=0.1, hmac_key="whsec") as sb:
        async with _client(sb, CallbackListener(hmac_key="whsec")) as client:
            job = await client.create_video(*sb.add_track())
            with anyio.fail_after(5):
                await job
    assert job.resolved_by == "callback"


# Refusals: nothing resolves, and each gets the right 4xx.


@pytest.fixture
async def running() -> AsyncIterator[tuple[Sandbox, Client, CallbackListener]]:
    async with Sandbox(render_time=30) as sb:
        listener = CallbackListener(hmac_key=b"k3y", max_body=4096)
        async with _client(sb, listener) as client:
            yield sb, client, listener


async def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
        ) as resp,
    ):
        await resp.read()
        return resp.status


def _signed(task_id: str, key: bytes = b"k3y", at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": sign(key, task_id, stamp)}


def _sig(task_id: str, stamp: str, key: bytes = b"k3y") -> dict[str, str]:
    return {"X-Webhook-Signature": sign(key, task_id, stamp)}


_BAD_URLS = [
    "file:///etc/passwd",
    "../../etc/passwd",
    "javascript:alert(1)",
    "http://a..b/x.mp4",
    "http://" + "a" * 64 + ".example/x.mp4",
    "http://x.example/\udc80.mp4",
    "http://exa\u200dmple.com/x.mp4",
]


def _with(task_id: str, **fields: object) -> bytes:
    """A success callback for ``task_id`` with ``fields`` in place of (or beside) its own:
    ``msg`` at the top, anything else in ``data``."""
    data: dict[str, object] = {"task_id": task_id, "video_url": "http://evil/x.mp4"}
    msg = fields.pop("msg", "ok")
    data.update(fields)
    return json.dumps({"code": 200, "msg": msg, "data": data}).encode()


def _body(task_id: str) -> bytes:
    return json.dumps(
        {"code": 200, "msg": "ok", "data": {"task_id": task_id, "video_url": "http://evil/x.mp4"}}
    ).encode()


async def test_refused_callbacks_resolve_nothing(
    running: tuple[Sandbox, Client, CallbackListener],
) -> None:
    sb, client, listener = running
    job = await client.create_video(*sb.add_track())
    good = listener.callback_url
    base = good.rsplit("/", 1)[0]
    tid = job.task_id
    cases = [
        (f"{base}/wrong-secret", _body(tid), _signed(tid), 403),
        (f"{base}/", _body(tid), _signed(tid), 404),
        (good, _body(tid), {}, 401),  # unsigned
        (good, _body(tid), _signed(tid, key=b"other"), 401),  # badly signed
        (good, _body(tid), _signed(tid, at=time.time() - 3600), 401),  # stale: replay
        (good, _body(tid), {**_signed(tid), "X-Webhook-Timestamp": "soon"}, 401),
        (good, b"{not json", _signed(tid), 400),
        (good, b"\xff\xfe", _signed(tid), 400),
        (good, b'{"code": 200, "data": []}', _signed(tid), 422),
        (good, b'{"code": "200", "msg": "", "data": {"task_id": "x"}}', _signed(tid), 422),
        (good, b'{"code": 200, "msg": "", "data": {"video_url": "u"}}', _signed(tid), 422),
        (good, b"[" + b" " * 5000 + b"]", _signed(tid), 413),
        # A timestamp no float can hold, correctly signed: refused, not a 500.
        (good, _body(tid), {"X-Webhook-Timestamp": "9" * 400, **_sig(tid, "9" * 400)}, 401),
        (good, _body(tid), {"X-Webhook-Timestamp": "١٢٣", **_sig(tid, "١٢٣")}, 401),
        # A number no JSON encoder writes back (a relay would store it as "Infinity").
        (
            good,
            _body(tid).replace(b'"code": 200', b'"code": 200, "size": 1e999'),
            _signed(tid),
            400,
        ),
        (good, _with(tid, msg=["not", "text"]), _signed(tid), 422),
    ] + [
        # A success naming no usable video URL: refused before "received", so the job is
        # left to its safety poll instead of failing for good.
        (good, _with(tid, video_url=url), _signed(tid), 422)
        for url in _BAD_URLS
    ]
    with anyio.fail_after(10):
        for url, body, headers, expected in cases:
            assert await _post(url, body, headers) == expected, (url, body[:40], headers)
    assert not job.done()
    assert client._registry.stats["resolved"] == 0
    # A correct, signed callback still gets through afterwards.
    assert await _post(good, _body(tid), _signed(tid)) == 200
    assert job.done() and job.result().video_url == "http://evil/x.mp4"


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def test_attach_mounts_on_the_host_app_without_a_second_port(sandbox: Sandbox) -> None:
    app = web.Application()

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    sock = _bound_socket()
    port = sock.getsockname()[1]
    listener = CallbackListener()
    listener.attach(app, public_url=f"http://127.0.0.1:{port}")
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        async with _client(sandbox, listener) as client:
            assert listener.callback_url.startswith(f"http://127.0.0.1:{port}/suno-mp4/callbacks/")
            assert listener.port == 0  # no server of its own was started
            job = await client.create_video(*sandbox.add_track())
            with anyio.fail_after(5):
                await job
        assert job.resolved_by == "callback"
    finally:
        await runner.cleanup()


async def test_attach_needs_a_public_url() -> None:
    from suno_mp4 import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="public_url"):
        CallbackListener().attach(web.Application())


async def test_a_callback_body_arriving_in_pieces_is_read_whole(sandbox: Sandbox) -> None:
    async with _client(sandbox, CallbackListener()) as client:
        job = await client.create_video(*sandbox.add_track())
        body = _body(job.task_id)
        assert client.callbacks is not None

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 7):
                yield body[i : i + 7]
                await anyio.sleep(0.001)  # separate writes on the wire

        with anyio.fail_after(5):
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    client.callbacks.callback_url,
                    data=pieces(),
                    headers={"Content-Type": "application/json"},
                ) as resp,
            ):
                assert resp.status == 200
        assert job.done() and job.resolved_by == "callback"


async def test_a_listener_a_remote_api_cannot_reach_is_flagged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No request is made: entering the client is enough to see the mistake.
    async with Client("k", base_url="https://api.example.invalid", callbacks=CallbackListener()):
        pass
    assert "no public_url" in caplog.text
    caplog.clear()
    listener = CallbackListener(public_url="https://hooks.example.invalid")
    async with Client("k", base_url="https://api.example.invalid", callbacks=listener):
        pass
    assert "no public_url" not in caplog.text


# What a framework hands to receive(): headers as it parsed them.


class _Listy:
    """Headers the way Starlette and Werkzeug hold them: ``get`` gives one value,
    ``getlist`` every value of a repeated header."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self._pairs if k.lower() == name.lower()), default)

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k.lower() == name.lower()]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("Content-Length", "²")], 400),  # str.isdigit() says yes, int() says no
        ([("Content-Length", "1" * 5000)], 400),  # past int()'s 4300 digits
        ([("Content-Length", "+12")], 400),
        ([("Content-Length", "")], 400),
        ([("Content-Length", "99999")], 413),
        # Two Content-Encoding headers: aiohttp would decode by the last one.
        ([("Content-Encoding", "identity"), ("Content-Encoding", "gzip")], 415),
        ([("Content-Encoding", "identity, gzip")], 415),
    ],
)
@pytest.mark.parametrize("kind", ["multidict", "getlist"])
async def test_receive_refuses_hostile_headers_with_a_4xx(
    sandbox: Sandbox, pairs: list[tuple[str, str]], expected: int, kind: str
) -> None:
    from multidict import CIMultiDict

    listener = CallbackListener(max_body=4096)
    listener.use_own_route("http://127.0.0.1:9")
    async with _client(sandbox, listener) as client:
        job = await client.create_video(*sandbox.add_track())
        headers = CIMultiDict(pairs) if kind == "multidict" else _Listy(pairs)
        body = _body(job.task_id)
        answer = await listener.receive(listener.callback_url, headers, body)  # type: ignore[arg-type]
        assert answer.status == expected, answer.message
        assert not job.done()
        ok = await listener.receive(listener.callback_url, {"content-length": str(len(body))}, body)
        assert ok.status == 200 and job.done()


async def test_an_early_callback_is_kept_small_whatever_its_body(sandbox: Sandbox) -> None:
    listener = CallbackListener()
    async with _client(sandbox, listener) as client:
        body = json.dumps(
            {
                "code": 500,
                "msg": "m" * 5_000,
                "data": {"task_id": "not-yet", "junk": [[]] * 5_000},
                "more": "x" * 5_000,
            }
        ).encode()
        assert await _post(listener.callback_url, body) == 200
        _, kept = client._registry._early["not-yet"]
        assert kept.extra == {} and len(kept.msg) <= 500
        assert kept.code == 500 and kept.task_id == "not-yet"


async def test_a_video_url_outside_data_is_not_taken_for_the_jobs() -> None:
    listener = CallbackListener()
    async with Sandbox(render_time=30) as sb, _client(sb, listener) as client:  # no callback
        job = await client.create_video(*sb.add_track())
        body = {"code": 200, "msg": "ok", "video_url": "http://evil/x.mp4"}
        body["data"] = {"task_id": job.task_id}
        assert await _post(listener.callback_url, json.dumps(body).encode()) == 200
        assert not job.done()  # nothing usable: the safety poll will tell


async def test_a_closing_client_answers_callbacks_503_so_they_come_again(
    sandbox: Sandbox,
) -> None:
    from suno_mp4 import ClientClosedError

    listener = CallbackListener()
    async with _client(sandbox, listener) as client:
        job = await client.create_video(*sandbox.add_track())
        client._registry.close(ClientClosedError("closing"))  # as aclose() does first
        assert await _post(listener.callback_url, _body(job.task_id)) == 503


async def test_a_failure_callback_with_an_empty_video_url_fails_its_job(sandbox: Sandbox) -> None:
    listener = CallbackListener()
    listener.use_own_route("http://127.0.0.1:9")  # the sandbox's own callbacks go nowhere
    async with _client(sandbox, listener) as client:
        job = await client.create_video(*sandbox.add_track())
        body = {"code": 501, "msg": "render failed", "data": {"task_id": job.task_id}}
        body["data"]["video_url"] = ""  # type: ignore[index]
        answer = await listener.receive(listener.callback_url, {}, json.dumps(body).encode())
        assert answer.status == 200
        with anyio.fail_after(5), pytest.raises(VideoGenerationError):
            await job


async def test_the_first_final_callback_of_a_job_not_registered_yet_wins(
    sandbox: Sandbox,
) -> None:
    # As for a registered job: a late failure, an empty duplicate or a replay does not
    # replace what the job will resolve to once it registers.
    listener = CallbackListener()
    listener.use_own_route("http://127.0.0.1:9")  # the sandbox's own callbacks go nowhere
    async with _client(sandbox, listener) as client:
        url = "http://127.0.0.1:9/v.mp4"
        first = {"code": 200, "msg": "ok", "data": {"task_id": "later", "video_url": url}}
        late = [
            {"code": 501, "msg": "render failed", "data": {"task_id": "later"}},
            {"code": 200, "msg": "ok", "data": {"task_id": "later"}},
            {"code": 200, "msg": "ok", "data": {"task_id": "later", "video_url": url + "?2"}},
        ]
        for body in [first, *late]:
            answer = await listener.receive(listener.callback_url, {}, json.dumps(body).encode())
            assert answer.status == 200
        job = client.job("later", expect_callback=True)
        with anyio.fail_after(5):
            assert (await job).video_url == url
        assert job.resolved_by == "callback"


async def test_a_non_final_early_callback_gives_way_to_the_final_one(sandbox: Sandbox) -> None:
    listener = CallbackListener()
    listener.use_own_route("http://127.0.0.1:9")
    async with _client(sandbox, listener) as client:
        empty = {"code": 200, "msg": "ok", "data": {"task_id": "later"}}
        failed = {"code": 501, "msg": "render failed", "data": {"task_id": "later"}}
        for body in (empty, failed):
            await listener.receive(listener.callback_url, {}, json.dumps(body).encode())
        with anyio.fail_after(5), pytest.raises(VideoGenerationError):
            await client.job("later", expect_callback=True)


async def test_a_failure_callback_keeps_no_url_and_a_buffer_body_is_read(
    sandbox: Sandbox,
) -> None:
    listener = CallbackListener()
    listener.use_own_route("http://127.0.0.1:9")
    async with _client(sandbox, listener) as client:
        job = await client.create_video(*sandbox.add_track())
        body = {"code": 501, "msg": "render failed", "data": {"task_id": job.task_id}}
        body["data"]["video_url"] = "file:///etc/passwd"  # type: ignore[index]
        raw = memoryview(json.dumps(body).encode())  # as some frameworks hand a body over
        answer = await listener.receive(listener.callback_url, {}, raw)  # type: ignore[arg-type]
        assert answer.status == 200
        assert answer.payload is not None and answer.payload.video_url is None
        with anyio.fail_after(5), pytest.raises(VideoGenerationError):
            await job


@pytest.mark.parametrize("skew", [float("nan"), float("inf"), -1, "300"])
def test_a_max_skew_that_would_let_any_age_through_is_refused(skew: object) -> None:
    from suno_mp4 import InvalidRequestError
    from suno_mp4._callbacks import verify_signature

    with pytest.raises(InvalidRequestError, match="max_skew"):
        CallbackListener(hmac_key=b"k3y", max_skew=skew)  # type: ignore[arg-type]
    stamp = str(int(time.time()) - 11 * 86400)  # signed right, eleven days ago
    with pytest.raises(InvalidRequestError, match="max_skew"):
        verify_signature(b"k3y", "t", stamp, sign(b"k3y", "t", stamp), max_skew=skew)  # type: ignore[arg-type]


@pytest.mark.parametrize("signature", [None, b"raw-bytes", 5])
def test_verify_signature_says_false_for_a_missing_or_odd_signature(signature: object) -> None:
    from suno_mp4._callbacks import verify_signature

    stamp = str(int(time.time()))
    assert verify_signature(b"k3y", "t", stamp, signature) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("max_body", [0, -1, 1.5, True])
def test_a_max_body_that_is_no_positive_int_is_refused(max_body: object) -> None:
    from suno_mp4 import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="max_body"):
        CallbackListener(max_body=max_body)  # type: ignore[arg-type]


async def test_an_expired_early_callback_gives_way_to_a_new_one(sandbox: Sandbox) -> None:
    from suno_mp4._clock import loop_time

    listener = CallbackListener()
    listener.use_own_route("http://127.0.0.1:9")
    async with _client(sandbox, listener) as client:
        url = "http://127.0.0.1:9/v.mp4"
        failed = {"code": 501, "msg": "render failed", "data": {"task_id": "later"}}
        await listener.receive(listener.callback_url, {}, json.dumps(failed).encode())
        registry = client._registry
        registry._early["later"] = (loop_time() - 1, registry._early["later"][1])  # expired
        done = {"code": 200, "msg": "ok", "data": {"task_id": "later", "video_url": url}}
        await listener.receive(listener.callback_url, {}, json.dumps(done).encode())
        with anyio.fail_after(5):
            assert (await client.job("later", expect_callback=True)).video_url == url
