"""The dashboard's server side: the page holds no data, its state needs the admin token, and
the sandbox logs every callback attempt with its answer, bounded. (The page itself is
driven in a real browser in test_dashboard_browser.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import pytest
from aiohttp import web
from suno_mp4_sandbox import CallbackEvent, Faults, Sandbox
from suno_mp4_sandbox._callback_log import CallbackLog

pytestmark = pytest.mark.anyio

GENERATE = "/api/v1/mp4/generate"


class ScriptedReceiver:
    """A callback receiver on its own port answering the given statuses in turn (the last
    one from then on)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses: Iterator[int] = iter(statuses)
        self.last = statuses[-1]
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.last = next(self.statuses, self.last)
        return web.Response(status=self.last)


async def serve_receiver(statuses: list[int]) -> tuple[ScriptedReceiver, web.AppRunner]:
    receiver = ScriptedReceiver(statuses)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    return receiver, runner


async def submit(
    session: aiohttp.ClientSession, sb: Sandbox, callback_url: str, **extra: str
) -> str:
    task_id, audio_id = sb.add_track()
    body = {"taskId": task_id, "audioId": audio_id, "callBackUrl": callback_url, **extra}
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    async with session.post(sb.base_url + GENERATE, json=body, headers=headers) as resp:
        answer = await resp.json()
    assert answer["code"] == 200, answer
    video_task_id: str = answer["data"]["taskId"]
    return video_task_id


async def state(session: aiohttp.ClientSession, sb: Sandbox) -> dict[str, Any]:
    async with session.get(sb.base_url + "/sandbox/ui/state", headers=sb.admin_headers) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


# The page and its state


async def test_dashboard_url_carries_the_admin_token_in_its_fragment() -> None:
    async with Sandbox(admin_token="t0ken-for-the-page") as sb:
        url = urlsplit(sb.dashboard_url)
        assert f"{url.scheme}://{url.netloc}" == sb.base_url
        assert url.path == "/sandbox/ui" and not url.query
        assert url.fragment == "token=t0ken-for-the-page"


async def test_dashboard_page_is_served_without_the_token_and_holds_no_task_data(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(render_time=0) as sb:
        await submit(session, sb, "https://callback.invalid/hook", author="Author-in-the-data")
        for name in ("", "/dashboard.js", "/dashboard.css"):
            async with session.get(f"{sb.base_url}/sandbox/ui{name}") as resp:
                assert resp.status == 200
                body = await resp.text()
                assert "Author-in-the-data" not in body and sb.admin_token not in body
                csp = resp.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        async with session.get(sb.base_url + "/sandbox/ui/other.js") as resp:
            assert resp.status == 404


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_dashboard_state_refuses_a_request_without_the_admin_token(
    session: aiohttp.ClientSession, token: str | None
) -> None:
    async with Sandbox() as sb:
        headers = {} if token is None else {"X-Sandbox-Token": token}
        async with session.get(sb.base_url + "/sandbox/ui/state", headers=headers) as resp:
            assert resp.status == 401
            assert "X-Sandbox-Token" in (await resp.json())["error"]


async def test_dashboard_state_shows_tasks_with_timings_branding_ids_and_video(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(render_time=0, credits=7) as sb:
        video_task_id = await submit(
            session, sb, "https://callback.invalid/hook", author="<b>DJ</b>", domainName="x.io"
        )
        with anyio.fail_after(10):
            record = await sb.wait_done(video_task_id)
        shown = await state(session, sb)
    assert (shown["credits"], shown["maintenance"], shown["total_tasks"]) == (6, False, 1)
    assert shown["faults"] == Faults().as_dict()
    (task,) = shown["tasks"]
    assert task["task_id"] == video_task_id and task["status"] == "CALLBACK_EXCEPTION"
    assert (task["author"], task["domain_name"]) == ("<b>DJ</b>", "x.io")
    assert (task["music_task_id"], task["audio_id"]) == (record.music_task_id, record.audio_id)
    assert task["created_at"] <= task["completed_at"]
    assert record.video_path is not None
    assert task["video"] == f"/videos/{record.video_path.name}"
    assert task["callbacks"][0]["outcome"] == "not sent: the host is not this machine"


async def test_dashboard_state_shows_only_the_newest_tasks(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suno_mp4_sandbox import _dashboard

    monkeypatch.setattr(_dashboard, "MAX_TASKS_SHOWN", 2)
    async with Sandbox(render_time=60) as sb:
        ids = [await submit(session, sb, "https://callback.invalid/hook") for _ in range(3)]
        shown = await state(session, sb)
    assert shown["total_tasks"] == 3
    assert [t["task_id"] for t in shown["tasks"]] == ids[:0:-1]


# The callback log


async def test_each_callback_attempt_is_logged_with_the_receivers_answer(
    session: aiohttp.ClientSession,
) -> None:
    receiver, runner = await serve_receiver([500, 503, 200])
    try:
        async with Sandbox(render_time=0, callback_retries=3) as sb:
            video_task_id = await submit(session, sb, receiver.url)
            with anyio.fail_after(10):
                record = await sb.wait_done(video_task_id)
            events = sb.callback_events(video_task_id)
            shown = (await state(session, sb))["tasks"][0]["callbacks"]
    finally:
        await runner.cleanup()
    assert record.status == "SUCCESS"
    assert [(e.attempt, e.status, e.outcome) for e in events] == [
        (1, 500, "HTTP 500"),
        (2, 503, "HTTP 503"),
        (3, 200, "HTTP 200"),
    ]
    assert [e.delivered for e in events] == [False, False, True]
    assert [e["outcome"] for e in shown] == ["HTTP 500", "HTTP 503", "HTTP 200"]


async def test_a_receiver_that_is_not_listening_is_logged_as_unreachable(
    session: aiohttp.ClientSession,
) -> None:
    receiver, runner = await serve_receiver([200])
    await runner.cleanup()  # the port is closed now
    async with Sandbox(render_time=0, callback_retries=2) as sb:
        video_task_id = await submit(session, sb, receiver.url)
        with anyio.fail_after(10):
            await sb.wait_done(video_task_id)
        events = sb.callback_events(video_task_id)
    assert [(e.attempt, e.status, e.outcome) for e in events] == [
        (1, None, "cannot connect"),
        (2, None, "cannot connect"),
    ]


async def test_dropped_delayed_and_duplicated_callbacks_are_noted(
    session: aiohttp.ClientSession,
) -> None:
    receiver, runner = await serve_receiver([200])
    try:
        async with Sandbox(render_time=0, seed=3) as sb:
            sb.faults.update({"callback_duplicate": 1.0, "callback_delay": 0.01})
            doubled = await submit(session, sb, receiver.url)
            with anyio.fail_after(10):
                await sb.wait_done(doubled)
            sb.faults.update({"callback_drop": 1.0, "callback_duplicate": 0.0})
            dropped = await submit(session, sb, receiver.url)
            with anyio.fail_after(10):
                await sb.wait_done(dropped)
            twice, never = sb.callback_events(doubled), sb.callback_events(dropped)
    finally:
        await runner.cleanup()
    assert [e.outcome for e in twice] == [
        "delayed 0.01 s (fault)",
        "HTTP 200",
        "sent again (duplicate fault)",
        "HTTP 200",
    ]
    assert [e.attempt for e in twice] == [None, 1, None, 1]
    assert [e.outcome for e in never] == ["delayed 0.01 s (fault)", "dropped (fault)"]


def test_callback_log_keeps_the_last_entries_of_the_last_tasks() -> None:
    log = CallbackLog(per_task=3, tasks=2)
    for n in range(5):
        log.add("a", CallbackEvent(float(n), f"HTTP {500 + n}", attempt=n + 1, status=500 + n))
    assert [e.status for e in log.of("a")] == [502, 503, 504]
    log.add("b", CallbackEvent(0.0, "dropped (fault)"))
    log.add("c", CallbackEvent(0.0, "dropped (fault)"))
    assert log.of("a") == () and len(log.of("b")) == len(log.of("c")) == 1
    with pytest.raises(ValueError):
        CallbackLog(per_task=0)


# The command line


async def test_sandbox_command_prints_a_dashboard_url_that_opens_the_state(
    session: aiohttp.ClientSession,
) -> None:
    command = [sys.executable, "-m", "suno_mp4_sandbox", "--port", "0"]
    with anyio.fail_after(15):
        async with await anyio.open_process(command, stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            out = b""
            while b"Ctrl-C" not in out:
                out += await proc.stdout.receive()
            match = re.search(rb"dashboard: (http://127\.0\.0\.1:\d+/sandbox/ui)#token=(\S+)", out)
            assert match, out
            page, token = match.group(1).decode(), match.group(2).decode()
            async with session.get(page) as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
            headers = {"X-Sandbox-Token": token}
            async with session.get(page + "/state", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["tasks"] == []
            proc.terminate()
            assert await proc.wait() == 0
