"""The sandbox at the protocol level: a raw aiohttp client against a real server on
127.0.0.1, checking the wire format, codes, lifecycle, callbacks, downloads and faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from suno_mp4_sandbox import (
    CallbackPolicy,
    Faults,
    PlaceholderRenderer,
    RenderFailed,
    RenderJob,
    Sandbox,
    admin_headers,
    build_arg_parser,
)
from suno_mp4_sandbox._main import sandbox_from_args

pytestmark = pytest.mark.anyio

GENERATE = "/api/v1/mp4/generate"
RECORD_INFO = "/api/v1/mp4/record-info"
NOWHERE = "https://callback.invalid/hook"


# Helpers


@attrs.frozen
class Received:
    body: dict[str, Any]
    headers: dict[str, str]


class Receiver:
    """A callback receiver on its own port: every POST lands in ``inbox``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts = 0
        self.seen: list[str] = []  # what happened, in order (the test appends too)
        send, inbox = anyio.create_memory_object_stream[Received](100)
        self._send: MemoryObjectSendStream[Received] = send
        self.inbox: MemoryObjectReceiveStream[Received] = inbox
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.seen.append("callback")
        self._send.send_nowait(Received(await request.json(), dict(request.headers)))
        return web.Response(status=self.status)

    def close(self) -> None:
        self._send.close()
        self.inbox.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rx.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        rx.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        yield rx
    finally:
        await runner.cleanup()
        rx.close()


def auth(sb: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}"}


async def submit(
    session: aiohttp.ClientSession,
    sb: Sandbox,
    track: tuple[str, str] | None = None,
    *,
    callback_url: str = NOWHERE,
    **extra: Any,
) -> dict[str, Any]:
    task_id, audio_id = track or sb.add_track()
    body = {"taskId": task_id, "audioId": audio_id, "callBackUrl": callback_url, **extra}
    async with session.post(sb.base_url + GENERATE, json=body, headers=auth(sb)) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


async def details(session: aiohttp.ClientSession, sb: Sandbox, task_id: str) -> dict[str, Any]:
    url = sb.base_url + RECORD_INFO
    async with session.get(url, params={"taskId": task_id}, headers=auth(sb)) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


async def submitted(session: aiohttp.ClientSession, sb: Sandbox, **kw: Any) -> str:
    answer = await submit(session, sb, **kw)
    assert answer["code"] == 200, answer
    task_id: str = answer["data"]["taskId"]
    return task_id


# Submitting: every documented code


async def test_submit_answers_a_new_video_task_id_and_bills_a_credit(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(credits=10, video_cost=3) as sb:
        track = sb.add_track()
        answer = await submit(session, sb, track, author="DJ", domainName="x.io")
        assert answer["code"] == 200 and answer["msg"] == "success"
        video_task_id = answer["data"]["taskId"]
        assert re.fullmatch(r"mp4_[0-9a-f]{24}", video_task_id) and video_task_id != track[0]
        assert sb.credits == 7
        record = sb.task(video_task_id)
        assert (record.music_task_id, record.audio_id) == track
        assert (record.author, record.domain_name) == ("DJ", "x.io")
        assert sb.stats.submits[track] == 1 and sb.stats.submits_accepted == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer"])
async def test_missing_or_wrong_credentials_answer_401(
    sandbox: Sandbox, session: aiohttp.ClientSession, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with session.get(sandbox.base_url + RECORD_INFO, headers=headers) as resp:
        assert resp.status == 200  # the body's code is the truth
        assert (await resp.json())["code"] == 401
    assert sandbox.stats.answers[401] == 1


async def test_maintenance_answers_455_before_checking_the_key(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.maintenance = True
    async with session.post(sandbox.base_url + GENERATE, data=b"{") as resp:
        assert (await resp.json())["code"] == 455
    sandbox.maintenance = False
    assert (await submit(session, sandbox))["code"] == 200


async def test_a_body_that_is_not_json_answers_400(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    url = sandbox.base_url + GENERATE
    async with session.post(url, data=b"{nope", headers=auth(sandbox)) as resp:
        answer = await resp.json()
    assert answer["code"] == 400 and answer["data"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"taskId": None}, "taskId"),
        ({"audioId": ""}, "audioId"),
        ({"audioId": 7}, "audioId"),
        ({"callBackUrl": None}, "callBackUrl"),
        ({"callBackUrl": "not a url"}, "callBackUrl"),
        ({"callBackUrl": "ftp://host/x"}, "callBackUrl"),
        ({"author": "a" * 51}, "author"),
        ({"domainName": 5}, "domainName"),
    ],
)
async def test_invalid_fields_answer_422_naming_the_field(
    sandbox: Sandbox, session: aiohttp.ClientSession, change: dict[str, Any], field: str
) -> None:
    task_id, audio_id = sandbox.add_track()
    body = {"taskId": task_id, "audioId": audio_id, "callBackUrl": NOWHERE, **change}
    body = {k: v for k, v in body.items() if v is not None}
    url = sandbox.base_url + GENERATE
    async with session.post(url, json=body, headers=auth(sandbox)) as resp:
        answer = await resp.json()
    assert answer["code"] == 422 and field in answer["msg"]
    assert sandbox.credits == 1_000_000 and not sandbox.tasks


@pytest.mark.parametrize("field", ["author", "domainName"])
async def test_null_branding_answers_422_it_is_no_string(
    sandbox: Sandbox, session: aiohttp.ClientSession, field: str
) -> None:
    # Found by the contract fuzzer: null was read as "not given" and the task billed.
    answer = await submit(session, sandbox, **{field: None})
    assert answer["code"] == 422 and field in answer["msg"] and not sandbox.tasks


async def test_fifty_character_branding_is_accepted(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    answer = await submit(session, sandbox, author="a" * 50, domainName="d" * 50)
    assert answer["code"] == 200


async def test_unknown_music_task_or_audio_id_answers_404(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    task_id, _ = sandbox.add_track()
    assert (await submit(session, sandbox, ("music_nope", "a")))["code"] == 404
    answer = await submit(session, sandbox, (task_id, "not-an-audio-id"))
    assert answer["code"] == 404 and "audioId" in answer["msg"]


async def test_insufficient_credits_answer_402_and_nothing_is_made(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(credits=1, video_cost=2) as sb:
        assert (await submit(session, sb))["code"] == 402
        assert sb.credits == 1 and not sb.tasks
        sb.credits = 2
        assert (await submit(session, sb))["code"] == 200
        assert sb.credits == 0


async def test_second_video_of_a_track_answers_409_only_when_configured(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(conflict_on_duplicate=True) as sb:
        track = sb.add_track()
        assert (await submit(session, sb, track))["code"] == 200
        assert (await submit(session, sb, track))["code"] == 409
        assert sb.stats.submits[track] == 1
    async with Sandbox() as sb:
        track = sb.add_track()
        for _ in range(2):
            assert (await submit(session, sb, track))["code"] == 200
        assert sb.stats.submits[track] == 2


async def test_a_music_task_with_several_tracks_keeps_their_index(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    task_id, audio_ids = sandbox.add_music_task(tracks=3)
    assert len(set(audio_ids)) == 3
    video_task_id = await submitted(session, sandbox, track=(task_id, audio_ids[2]))
    data = (await details(session, sandbox, video_task_id))["data"]
    # musicId is the source track (upstream's wording), not the music task.
    assert (data["musicId"], data["audioId"], data["musicIndex"]) == (audio_ids[2],) * 2 + (2,)
    assert task_id not in data.values()


# Task details and lifecycle


async def test_record_info_goes_from_pending_to_success_with_ms_times(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(render_time=0.2) as sb:
        before = time.time()
        video_task_id = await submitted(session, sb)
        pending = (await details(session, sb, video_task_id))["data"]
        assert pending["successFlag"] == "PENDING"
        assert pending["response"] is None and pending["completeTime"] is None
        assert abs(pending["createTime"] / 1000 - before) < 5
        with anyio.fail_after(5):
            record = await sb.wait_done(video_task_id)
        data = (await details(session, sb, video_task_id))["data"]
    assert data["successFlag"] == "CALLBACK_EXCEPTION"  # nowhere to deliver it
    assert data["response"] == {"videoUrl": record.video_url}
    assert record.video_url is not None and record.video_url.startswith(sb.base_url + "/videos/")
    assert record.completed_at is not None
    assert data["completeTime"] == round(record.completed_at * 1000)
    assert data["completeTime"] - data["createTime"] >= 190
    assert (data["errorCode"], data["errorMessage"]) == (None, None)
    assert data["callbackUrl"] == NOWHERE and data["taskId"] == video_task_id


async def test_string_time_format_is_utc_date_and_time(session: aiohttp.ClientSession) -> None:
    async with Sandbox(render_time=0, time_format="string") as sb:
        video_task_id = await submitted(session, sb)
        with anyio.fail_after(5):
            record = await sb.wait_done(video_task_id)
        data = (await details(session, sb, video_task_id))["data"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["createTime"])
    assert record.completed_at is not None
    expected = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.completed_at))
    assert data["completeTime"] == expected


async def test_record_info_of_an_unknown_task_answers_404(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    assert (await details(session, sandbox, "mp4_unknown"))["code"] == 404
    assert sandbox.stats.polls["mp4_unknown"] == 1


async def test_record_info_without_task_id_answers_422(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    async with session.get(sandbox.base_url + RECORD_INFO, headers=auth(sandbox)) as resp:
        answer = await resp.json()
    assert answer["code"] == 422 and "taskId" in answer["msg"]


async def test_render_time_is_drawn_from_the_range_plus_the_audio_length(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(render_time=(5, 6), render_time_per_audio_second=2.0, seed=4) as sb:
        record = sb.task(await submitted(session, sb, track=sb.add_track(duration=3)))
        assert 11 <= record.due_at - record.created_at <= 12
        sb.advance(seconds=12)  # a jump of the clock finishes what fell due
        with anyio.fail_after(5):
            await sb.wait_done(record.task_id)
        assert record.status == "CALLBACK_EXCEPTION"


# Callbacks


async def test_success_callback_body_reaches_the_receiver(
    sandbox: Sandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    video_task_id = await submitted(session, sandbox, callback_url=receiver.url)
    with anyio.fail_after(5):
        got = await receiver.inbox.receive()
        record = await sandbox.wait_done(video_task_id)
    assert got.body == {
        "code": 200,
        "msg": "MP4 generated successfully.",
        "data": {"task_id": video_task_id, "video_url": record.video_url},
    }
    assert got.headers["Content-Type"].startswith("application/json")
    assert "X-Webhook-Signature" not in got.headers  # the seed does not sign
    assert record.status == "SUCCESS" and record.callbacks_sent == 1
    assert sandbox.stats.callbacks_sent == 1


async def test_failed_render_ends_generate_mp4_failed_with_a_failure_callback(
    sandbox: Sandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    track = sandbox.add_track(fail="audio could not be decoded")
    video_task_id = await submitted(session, sandbox, track=track, callback_url=receiver.url)
    with anyio.fail_after(5):
        got = await receiver.inbox.receive()
    assert got.body == {
        "code": 500,
        "msg": "Build Failed - Audio mp4 generation failed: audio could not be decoded",
        "data": {"task_id": video_task_id, "video_url": None},
    }
    data = (await details(session, sandbox, video_task_id))["data"]
    assert data["successFlag"] == "GENERATE_MP4_FAILED" and data["response"] is None
    assert (data["errorCode"], data["errorMessage"]) == (500, "audio could not be decoded")


async def test_signed_callbacks_carry_a_verifiable_hmac(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with Sandbox(render_time=0, hmac_key="whsec_test") as sb:
        video_task_id = await submitted(session, sb, callback_url=receiver.url)
        with anyio.fail_after(5):
            got = await receiver.inbox.receive()
    timestamp = got.headers["X-Webhook-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    message = f"{video_task_id}.{timestamp}".encode()
    digest = hmac.new(b"whsec_test", message, hashlib.sha256).digest()
    assert hmac.compare_digest(
        got.headers["X-Webhook-Signature"], base64.b64encode(digest).decode()
    )


async def test_callback_to_a_non_loopback_host_fails_without_any_network_attempt(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    video_task_id = await submitted(session, sandbox, callback_url=NOWHERE)
    with anyio.fail_after(5):
        record = await sandbox.wait_done(video_task_id)
    assert record.status == "CALLBACK_EXCEPTION" and record.video_url is not None
    assert sandbox.stats.callback_attempts == 0 and sandbox.stats.callbacks_failed == 1


async def test_a_failing_receiver_is_retried_then_the_task_is_callback_exception(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.status = 500
    async with Sandbox(render_time=0, callback_retries=2) as sb:
        video_task_id = await submitted(session, sb, callback_url=receiver.url)
        with anyio.fail_after(5):
            record = await sb.wait_done(video_task_id)
    assert receiver.posts == 2 and sb.stats.callback_attempts == 2
    assert record.status == "CALLBACK_EXCEPTION" and record.video_url is not None


async def test_callback_attempts_and_delays_are_the_policys_and_the_flag_comes_last(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.status = 503
    policy = CallbackPolicy(attempts=4, retry_delays=(0.0, 0.05))
    async with Sandbox(render_time=0, callbacks=policy) as sb:
        video_task_id = await submitted(session, sb, callback_url=receiver.url)
        with anyio.fail_after(5):
            for _ in range(policy.attempts - 1):
                await receiver.inbox.receive()
                # Until the last attempt has failed, polls see the video as SUCCESS.
                assert sb.task(video_task_id).status == "SUCCESS"
            record = await sb.wait_done(video_task_id)
    assert receiver.posts == 4 and sb.stats.callback_attempts == 4
    assert record.status == "CALLBACK_EXCEPTION" and record.video_url is not None
    assert sb.stats.callbacks_failed == 1


@pytest.mark.parametrize("unreachable", ["receiver", "non-loopback"])
async def test_with_no_failure_status_an_undelivered_callback_leaves_the_task_success(
    session: aiohttp.ClientSession, receiver: Receiver, unreachable: str
) -> None:
    receiver.status = 500
    policy = CallbackPolicy(attempts=2, retry_delays=(0,), failure_status=None)
    url = receiver.url if unreachable == "receiver" else NOWHERE
    async with Sandbox(render_time=0, callbacks=policy) as sb:
        video_task_id = await submitted(session, sb, callback_url=url)
        with anyio.fail_after(5):
            record = await sb.wait_done(video_task_id)
        data = (await details(session, sb, video_task_id))["data"]
    assert receiver.posts == (2 if unreachable == "receiver" else 0)
    assert record.status == "SUCCESS" and data["successFlag"] == "SUCCESS"
    assert data["response"]["videoUrl"] == record.video_url
    assert sb.stats.callbacks_failed == 1


def test_callback_policy_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="attempts"):
        CallbackPolicy(attempts=0)
    with pytest.raises(ValueError, match="retry_delays"):
        CallbackPolicy(retry_delays=())
    with pytest.raises(ValueError, match="retry_delays"):
        CallbackPolicy(retry_delays=(float("nan"),))
    with pytest.raises(ValueError, match="failure_status"):
        CallbackPolicy(failure_status="SUCCESS")  # type: ignore[arg-type]
    assert CallbackPolicy(retry_delays=[1, 2]).delay(5) == 2  # the last delay repeats


def test_the_command_line_sets_the_callback_policy() -> None:
    args = build_arg_parser().parse_args(
        [
            "--callback-attempts",
            "5",
            "--callback-retry-delays",
            "0,1.5",
            "--callback-failure-status",
            "none",
        ]
    )
    assert sandbox_from_args(args).callbacks == CallbackPolicy(5, (0.0, 1.5), None)
    legacy = build_arg_parser().parse_args(["--callback-retries", "2"])
    assert sandbox_from_args(legacy).callbacks == CallbackPolicy(attempts=2)


async def test_early_callback_arrives_before_the_submit_answer(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with Sandbox(render_time=30, faults=Faults(callback_early=1.0)) as sb:
        video_task_id = await submitted(session, sb, callback_url=receiver.url)
        receiver.seen.append("answer")
        assert receiver.seen == ["callback", "answer"]
        assert (receiver.inbox.receive_nowait()).body["data"]["task_id"] == video_task_id
        assert sb.stats.callbacks_early == 1 and sb.stats.faults["callback_early"] == 1


async def test_duplicated_callback_is_delivered_twice(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with Sandbox(render_time=0, faults=Faults(callback_duplicate=1.0)) as sb:
        video_task_id = await submitted(session, sb, callback_url=receiver.url)
        with anyio.fail_after(5):
            record = await sb.wait_done(video_task_id)
    assert receiver.posts == 2 and record.callbacks_sent == 2
    assert sb.stats.callbacks_duplicated == 1


async def test_dropped_callback_is_never_sent_but_the_video_is_made(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with Sandbox(render_time=0, faults=Faults(callback_drop=1.0)) as sb:
        video_task_id = await submitted(session, sb, callback_url=receiver.url)
        with anyio.fail_after(5):
            record = await sb.wait_done(video_task_id)
    assert receiver.posts == 0 and record.status == "SUCCESS"
    assert sb.stats.callbacks_dropped == 1 == sb.stats.faults["callback_drop"]


# Downloads and retention


async def test_video_download_serves_the_file_and_honours_range(
    session: aiohttp.ClientSession,
) -> None:
    renderer = PlaceholderRenderer(size_bytes=100_000)
    async with Sandbox(render_time=0, renderer=renderer) as sb:
        with anyio.fail_after(5):
            record = await sb.wait_done(await submitted(session, sb))
        assert record.video_url is not None and record.video_path is not None
        content = record.video_path.read_bytes()
        async with session.get(record.video_url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "video/mp4"
            assert int(resp.headers["Content-Length"]) == 100_000
            assert await resp.read() == content
        async with session.get(record.video_url, headers={"Range": "bytes=1000-1999"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == "bytes 1000-1999/100000"
            assert await resp.read() == content[1000:2000]
    assert content.startswith(b"suno_mp4 sandbox placeholder")


async def test_unknown_video_answers_404(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    async with session.get(sandbox.base_url + "/videos/nope.mp4") as resp:
        assert resp.status == 404


async def test_videos_are_deleted_fourteen_days_after_completion(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(render_time=0) as sb:
        with anyio.fail_after(5):
            record = await sb.wait_done(await submitted(session, sb))
        assert record.video_url is not None and record.video_path is not None
        sb.advance(days=13, hours=23)
        async with session.get(record.video_url) as resp:
            assert resp.status == 200
        sb.advance(days=1)
        assert not record.video_path.exists() and record.expired
        async with session.get(record.video_url) as resp:
            assert resp.status == 404


async def test_expiry_is_also_checked_when_the_video_is_asked_for(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(render_time=0) as sb:
        with anyio.fail_after(5):
            record = await sb.wait_done(await submitted(session, sb))
        assert record.video_url is not None and record.video_path is not None
        sb._clock.advance(15 * 86400)  # behind the sweep's back
        async with session.get(record.video_url) as resp:
            assert resp.status == 404
        assert not record.video_path.exists()


# Rate limits


async def test_rate_limit_answers_429_with_retry_after(session: aiohttp.ClientSession) -> None:
    async with Sandbox(rate_limit=(2, 30.0)) as sb:
        codes = []
        for _ in range(3):
            async with session.get(
                sb.base_url + RECORD_INFO, params={"taskId": "x"}, headers=auth(sb)
            ) as resp:
                codes.append((await resp.json())["code"])
                retry_after = resp.headers.get("Retry-After")
        assert codes == [404, 404, 429]
        assert retry_after is not None and 29 <= int(retry_after) <= 30
        assert sb.stats.answers[429] == 1


async def test_a_rate_limit_storm_answers_429_until_its_end(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.faults.rate_limit_storm_until = sandbox.now() + 600
    async with session.post(sandbox.base_url + GENERATE, json={}, headers=auth(sandbox)) as resp:
        assert (await resp.json())["code"] == 429
        assert 599 <= int(resp.headers["Retry-After"]) <= 600
    sandbox.advance(seconds=601)
    assert (await submit(session, sandbox))["code"] == 200
    assert sandbox.stats.faults["rate_limit_storm"] == 1


# Injected faults


async def test_poll_5xx_is_a_bare_502_with_an_html_body(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.faults.poll_5xx = 1.0
    url = sandbox.base_url + RECORD_INFO
    async with session.get(url, params={"taskId": "x"}, headers=auth(sandbox)) as resp:
        assert resp.status == 502 and resp.content_type == "text/html"
        assert "Bad Gateway" in await resp.text()
    assert sandbox.stats.faults["poll_5xx"] == 1 and sandbox.stats.answers[502] == 1


async def test_poll_455_is_the_maintenance_envelope(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.faults.poll_455 = 1.0
    assert (await details(session, sandbox, "x"))["code"] == 455


async def test_submit_5xx_after_accept_bills_and_makes_the_video(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.faults.submit_5xx_after_accept = 1.0
    track = sandbox.add_track()
    body = {"taskId": track[0], "audioId": track[1], "callBackUrl": NOWHERE}
    url = sandbox.base_url + GENERATE
    async with session.post(url, json=body, headers=auth(sandbox)) as resp:
        assert resp.status == 502
    assert sandbox.stats.submits[track] == 1 and sandbox.credits == 999_999
    (record,) = sandbox.tasks.values()
    with anyio.fail_after(5):
        await sandbox.wait_done(record.task_id)


async def test_reset_cuts_the_answer_halfway(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.faults.reset = 1.0
    url = sandbox.base_url + RECORD_INFO
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url, params={"taskId": "x"}, headers=auth(sandbox)) as resp:
            await resp.read()
    assert sandbox.stats.faults["reset"] == 1


async def test_download_reset_cuts_the_video_halfway(session: aiohttp.ClientSession) -> None:
    async with Sandbox(render_time=0, renderer=PlaceholderRenderer(size_bytes=50_000)) as sb:
        with anyio.fail_after(5):
            record = await sb.wait_done(await submitted(session, sb))
        assert record.video_url is not None
        sb.faults.download_reset = 1.0
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(record.video_url) as resp:
                await resp.read()


async def test_slow_answer_waits_before_answering(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.faults.slow_answer, sandbox.faults.slow_seconds = 1.0, 0.3
    start = anyio.current_time()
    assert (await details(session, sandbox, "x"))["code"] == 404
    assert anyio.current_time() - start >= 0.3


async def test_a_stall_never_answers_and_stop_still_ends_it_at_once(
    session: aiohttp.ClientSession,
) -> None:
    sb = Sandbox(faults=Faults(stall=1.0))
    async with sb:
        with pytest.raises(TimeoutError):
            timeout = aiohttp.ClientTimeout(total=0.3)
            async with session.get(sb.base_url + RECORD_INFO, timeout=timeout):
                pass
        start = anyio.current_time()
    assert anyio.current_time() - start < 0.9
    assert sb.stats.faults["stall"] == 1


def test_faults_reject_values_that_are_not_probabilities() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="poll_5xx"):
        faults.poll_5xx = 1.5
    with pytest.raises(ValueError, match="unknown"):
        faults.update({"callback_dorp": 1.0})


# Rendering


async def test_a_renderer_that_raises_render_failed_fails_the_task(
    session: aiohttp.ClientSession,
) -> None:
    class Broken:
        async def render(self, job: RenderJob) -> Path:
            raise RenderFailed(f"no codec for {job.title}")

    async with Sandbox(render_time=0, renderer=Broken()) as sb:
        track = sb.add_track(title="Song")
        with anyio.fail_after(5):
            record = await sb.wait_done(await submitted(session, sb, track=track))
    assert record.status == "GENERATE_MP4_FAILED" and record.error_message == "no codec for Song"


async def test_a_large_placeholder_is_written_quickly(tmp_path: Path) -> None:
    job = RenderJob("mp4_big", None, 5.0, "t", None, None, tmp_path)
    with anyio.fail_after(5):
        path = await PlaceholderRenderer(size_bytes=20 * 2**20).render(job)
    assert path.name == "mp4_big.placeholder.mp4" and path.stat().st_size == 20 * 2**20


async def test_a_track_from_a_file_takes_its_length_from_the_file(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    wav = tmp_path / "tone.wav"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    await anyio.run_process([*command, "-i", "sine=frequency=440:duration=3", str(wav)])
    jobs: list[RenderJob] = []

    class Recording(PlaceholderRenderer):
        async def render(self, job: RenderJob) -> Path:
            jobs.append(job)
            return await super().render(job)

    async with Sandbox(render_time=0, renderer=Recording()) as sb:
        with pytest.raises(FileNotFoundError):
            sb.add_track(tmp_path / "missing.wav")
        track = sb.add_track(wav)
        with anyio.fail_after(5):
            await sb.wait_done(await submitted(session, sb, track=track, author="DJ"))
    (job,) = jobs
    assert (job.audio_path, job.title, job.duration, job.author) == (wav, "tone", 3.0, "DJ")


# Stats, lifecycle, admin routes, command line


async def test_stats_count_requests_polls_answers_and_reset(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    video_task_id = await submitted(session, sandbox)
    await details(session, sandbox, video_task_id)
    await details(session, sandbox, video_task_id)
    stats = sandbox.stats
    assert stats.requests == {"generate": 1, "record-info": 2}
    assert stats.polls[video_task_id] == 2 and stats.answers[200] == 3
    stats.reset()
    assert stats.requests == {} and stats.submits_accepted == 0 and not stats.answers


async def test_stop_cancels_pending_work_and_leaves_no_task_behind(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    import asyncio

    before = asyncio.all_tasks()
    async with Sandbox(render_time=30) as sb:
        for _ in range(5):
            await submitted(session, sb, callback_url=receiver.url)
        video_dir = sb.video_dir
    assert asyncio.all_tasks() == before
    assert not video_dir.exists()


def test_base_url_is_known_only_once_started() -> None:
    with pytest.raises(RuntimeError, match="not been started"):
        _ = Sandbox().base_url


async def test_admin_routes_drive_the_sandbox_over_http(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    base = sandbox.base_url + "/sandbox"

    admin = sandbox.admin_headers

    async def post(path: str, body: object) -> Any:
        async with session.post(base + path, json=body, headers=admin) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    track = await post("/tracks", {"title": "T", "duration": 2})
    video_task_id = await submitted(session, sandbox, track=(track["task_id"], track["audio_id"]))
    async with session.get(f"{base}/tasks/{video_task_id}", headers=admin) as resp:
        task = await resp.json()
    assert task["audio_id"] == track["audio_id"] and task["status"] == "PENDING"
    assert (await post("/faults", {"poll_455": 0.5}))["poll_455"] == 0.5
    assert sandbox.faults.poll_455 == 0.5
    assert (await post("/maintenance", {"on": True})) == {"maintenance": True}
    assert sandbox.maintenance
    before = sandbox.now()
    assert (await post("/advance", {"days": 1}))["now"] >= before + 86400
    async with session.get(base + "/stats", headers=admin) as resp:
        stats = await resp.json()
    assert stats["submits"] == {f"{track['task_id']}/{track['audio_id']}": 1}
    async with session.post(base + "/faults", json={"nope": 1}, headers=admin) as resp:
        assert resp.status == 400
    async with session.get(f"{base}/tasks/unknown", headers=admin) as resp:
        assert resp.status == 404
        assert "error" in await resp.json()


def test_arg_parser_reads_ranges_rate_limits_and_faults() -> None:
    args = build_arg_parser().parse_args(
        ["--render-time", "1,20", "--rate-limit", "10/2", "--fault", "callback_drop=0.25"]
    )
    assert args.render_time == (1.0, 20.0) and args.rate_limit == (10, 2.0)
    assert args.fault == [("callback_drop", 0.25)]


async def test_module_entry_point_serves_until_sigterm(session: aiohttp.ClientSession) -> None:
    command = [sys.executable, "-m", "suno_mp4_sandbox", "--port", "0", "--seed", "1"]
    with anyio.fail_after(15):
        async with await anyio.open_process(command, stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            first = b""
            while not first.endswith(b"\n"):
                first += await proc.stdout.receive(1)
            pattern = rb"(http://127\.0\.0\.1:\d+) api key (sk-sandbox-[0-9a-f]+) admin token (\S+)"
            match = re.search(pattern, first)
            assert match, first
            base_url, api_key, token = (group.decode() for group in match.groups())
            url = base_url + "/sandbox/tracks"
            async with session.post(url, json={}) as resp:
                assert resp.status == 401  # the admin routes want the printed token
            async with session.post(url, json={}, headers=admin_headers(token)) as resp:
                track = await resp.json()
            body = {"taskId": track["task_id"], "audioId": track["audio_id"]}
            body["callBackUrl"] = NOWHERE
            headers = {"Authorization": f"Bearer {api_key}"}
            async with session.post(base_url + GENERATE, json=body, headers=headers) as resp:
                assert (await resp.json())["code"] == 200
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
