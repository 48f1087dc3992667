"""Callbacks in any web framework (one verification path), asyncio only (a typed error
under trio, a plugin that skips there), and no secret in any log."""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from suno_mp4_sandbox import Sandbox

from suno_mp4 import (
    AsyncioRequiredError,
    CallbackListener,
    Client,
    PollPolicy,
    parse_callback_body,
    sign,
)

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]

KEY = "signing-key"


def _requests(secret_path: str, task_id: str) -> dict[str, tuple[str, dict[str, str], bytes]]:
    body = json.dumps(
        {"code": 200, "msg": "ok", "data": {"task_id": task_id, "video_url": "http://x/v.mp4"}}
    ).encode()
    now = str(int(time.time()))
    stale = str(int(time.time()) - 3600)
    good = {"X-Webhook-Timestamp": now, "X-Webhook-Signature": sign(KEY, task_id, now)}
    old = {"X-Webhook-Timestamp": stale, "X-Webhook-Signature": sign(KEY, task_id, stale)}
    forged = secret_path.rsplit("/", 1)[0] + "/not-the-secret"
    return {
        "forged URL": (forged, good, body),
        "unsigned": (secret_path, {}, body),
        "stale": (secret_path, old, body),
        "not JSON": (secret_path, good, b"{nope"),
        "deep JSON": (secret_path, good, b"[" * 5000 + b"]" * 5000),
        "wrong shape": (secret_path, good, b'{"code": 200, "data": {}}'),
        "too large": (secret_path, good, b" " * (64 * 1024 + 1)),
        "compressed": (secret_path, {**good, "Content-Encoding": "gzip"}, gzip.compress(body)),
        "good": (secret_path, good, body),
    }


async def test_receive_answers_exactly_as_the_aiohttp_listener(sandbox: Sandbox) -> None:
    """The framework-agnostic entry and the aiohttp route are one verification path."""
    own = CallbackListener(hmac_key=KEY)
    slow = PollPolicy(initial_delay=60, fallback_interval=60)
    async with Client(sandbox.api_key, base_url=sandbox.base_url, callbacks=own, poll=slow) as c:
        job = await c.create_video(*sandbox.add_track())
        path = "/" + own.callback_url.split("/", 3)[3]
        via_http: dict[str, int] = {}
        async with aiohttp.ClientSession() as http:
            for name, (target, headers, body) in _requests(path, job.task_id).items():
                if name == "good":
                    continue
                url = own.callback_url.split(path)[0] + target
                async with http.post(url, data=body, headers=headers) as resp:
                    via_http[name] = resp.status
        via_receive = {
            name: (await own.receive(target, headers, body)).status
            for name, (target, headers, body) in _requests(path, job.task_id).items()
            if name != "good"
        }
        assert not job.done()  # nothing resolved on a refusal
        target, headers, body = _requests(path, job.task_id)["good"]
        answer = await own.receive(target, headers, body)
        assert answer.status == 200 and answer.payload is not None
        with anyio.fail_after(5):
            await job
    assert via_receive == via_http
    assert via_http == {
        "forged URL": 403,
        "unsigned": 401,
        "stale": 401,
        "not JSON": 400,
        "deep JSON": 400,
        "wrong shape": 422,
        "too large": 413,
        "compressed": 415,
    }
    assert job.resolved_by == "callback"


def test_the_callback_parser_is_public_and_typed() -> None:
    payload, _ = parse_callback_body(
        b'{"code": 0, "msg": "", "data": {"task_id": "t1", "video_url": "http://x/v"}}'
    )
    assert payload.ok and payload.task_id == "t1"
    from suno_mp4 import CallbackError

    with pytest.raises(CallbackError) as info:
        parse_callback_body(b'{"code": 200}')
    assert info.value.status == 422


async def test_the_client_says_it_needs_asyncio_under_trio() -> None:
    pytest.importorskip("trio")

    async def main() -> None:
        async with Client("key", base_url="http://127.0.0.1:9"):
            pass

    def run() -> BaseException | None:
        try:
            anyio.run(main, backend="trio")
        except BaseException as exc:
            return exc
        return None

    error = await anyio.to_thread.run_sync(run)
    assert isinstance(error, AsyncioRequiredError)
    assert "asyncio" in str(error)


PROJECT_TEST = """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param  # what a project testing on every backend has

@pytest.mark.anyio
async def test_my_bot_makes_a_video(suno_sandbox, suno_client):
    video = await (await suno_client.create_video(*suno_sandbox.add_track()))
    assert video.video_url.startswith(suno_sandbox.base_url)
"""


def test_the_plugin_runs_on_asyncio_and_skips_trio_in_a_project(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("trio")
    pytester.makepyfile(test_project=PROJECT_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "anyio", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*runs on asyncio only*"])


async def test_neither_the_key_nor_the_secret_reaches_any_log_at_debug(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    listener = CallbackListener(hmac_key=KEY)
    app = web.Application()
    runner = web.AppRunner(app)  # aiohttp's access log on, as in a bot
    async with Sandbox(render_time=0.05, hmac_key=KEY) as sb:
        listener.attach(app, public_url="http://127.0.0.1:0")
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        listener.public_url = f"http://127.0.0.1:{port}"
        try:
            poll = PollPolicy(initial_delay=0.05, fallback_interval=60)
            async with Client(sb.api_key, base_url=sb.base_url, callbacks=listener, poll=poll) as c:
                job = await c.create_video(*sb.add_track(), author="DJ")
                with anyio.fail_after(20):
                    video = await job
                await c.download(video, tmp_path / "v.mp4")
                await c.get_video_details(job.task_id)
                secret = listener.callback_url.rsplit("/", 1)[1]
                async with aiohttp.ClientSession() as http:  # a refused one, logged too
                    async with http.post(listener.callback_url, data=b"{") as resp:
                        assert resp.status == 400
        finally:
            await runner.cleanup()
    records: list[Any] = caplog.records
    assert job.resolved_by == "callback"
    assert any(r.name == "aiohttp.access" for r in records)
    for record in records:
        text = record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values())
        assert sb.api_key not in text, record.name
        assert secret not in text, record.name


def test_the_sdk_prints_nothing_unless_asked(tmp_path: Path) -> None:
    """A retry is a WARNING: an application that configured no logging must not see it on
    stderr (Python's last-resort handler would print it); SUNO_MP4_LOG turns it on."""
    import os
    import subprocess
    import sys

    script = (
        "import anyio, suno_mp4\n"
        "async def main():\n"
        "    retry = suno_mp4.RetryPolicy(attempts=2, initial_backoff=0.01)\n"
        "    async with suno_mp4.Client('k', base_url='http://127.0.0.1:9', retry=retry) as c:\n"
        "        try:\n"
        "            await c.get_video_details('t')\n"
        "        except suno_mp4.TransportError:\n"
        "            print('typed')\n"
        "anyio.run(main)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SUNO_MP4_LOG"}
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert quiet.stdout.strip() == "typed" and quiet.stderr == ""
    env["SUNO_MP4_LOG"] = "warning"
    loud = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert "WARNING suno_mp4.transport: retrying" in loud.stderr
