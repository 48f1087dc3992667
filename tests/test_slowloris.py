"""Slowloris: idle or trickling connections to the callback listener's own port are closed
on time and cannot lock out callbacks, nor use up the process's descriptors (the victim
and the attacker are tests/_slowloris_victim.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import pytest
from aiohttp import web
from anyio.abc import SocketStream
from suno_mp4_sandbox import Sandbox

from benchmarks.slowloris import ask, spawn_victim
from suno_mp4 import CallbackListener, Client, InvalidRequestError, PollPolicy, _serving
from suno_mp4._serving import GuardedServer

pytestmark = pytest.mark.anyio

#: The safety poll is a minute away: only a callback resolves a job in time.
NO_POLL = PollPolicy(initial_delay=60, fallback_interval=60, max_wait=600)
CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError)


@asynccontextmanager
async def _serving_listener(**options: Any) -> AsyncIterator[CallbackListener]:
    """A listener on its own port with no client (it answers 503 past the body read)."""
    listener = CallbackListener(**options)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


def _guard(listener: CallbackListener) -> GuardedServer:
    server = listener._runner
    assert isinstance(server, GuardedServer)
    return server


async def _until_closed(stream: SocketStream) -> bytes:
    """Everything the peer sends until it closes the connection."""
    data = b""
    try:
        while True:
            data += await stream.receive()
    except CLOSED:
        return data


async def test_a_connection_that_sends_nothing_is_closed_after_read_timeout() -> None:
    async with _serving_listener(read_timeout=0.5) as listener:
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", listener.port) as stream:
                start = anyio.current_time()
                assert await _until_closed(stream) == b""
                elapsed = anyio.current_time() - start
        assert _guard(listener).stats["timed_out"] == 1
        assert _guard(listener).connections == 0
    assert elapsed >= 0.4  # closed by the deadline (timed_out), not sooner


async def test_a_connection_trickling_its_head_is_closed_after_read_timeout() -> None:
    head = b"POST /suno-mp4/callbacks/guess HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 200
    async with _serving_listener(read_timeout=0.5) as listener:
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", listener.port) as stream:

                async def trickle() -> None:
                    # A byte every 20 ms: the connection is never silent, never done.
                    try:
                        for i in range(len(head)):
                            await stream.send(head[i : i + 1])
                            await anyio.sleep(0.02)
                    except (*CLOSED, anyio.ClosedResourceError):
                        pass

                start = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(trickle)
                    assert await _until_closed(stream) == b""
                    elapsed = anyio.current_time() - start
                    tg.cancel_scope.cancel()
        assert _guard(listener).stats["timed_out"] == 1
    assert elapsed >= 0.4  # closed by the deadline (timed_out), not sooner


async def test_a_kept_alive_connection_gets_read_timeout_after_its_request() -> None:
    async with _serving_listener(read_timeout=0.5) as listener:
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", listener.port) as stream:
                await stream.send(
                    b"POST /suno-mp4/callbacks/wrong HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive()
                answered = anyio.current_time()
                await _until_closed(stream)
                elapsed = anyio.current_time() - answered
        assert answer.startswith(b"HTTP/1.1 403")
    assert elapsed >= 0.4  # closed by the deadline (timed_out), not sooner


async def test_idle_connections_at_the_cap_do_not_lock_out_a_callback(sandbox: Sandbox) -> None:
    listener = CallbackListener(max_connections=8, read_timeout=30)
    async with Client(
        sandbox.api_key, base_url=sandbox.base_url, callbacks=listener, poll=NO_POLL
    ) as client:
        guard = _guard(listener)
        with anyio.fail_after(10):
            async with AsyncExitStack() as stack:
                idle = []
                for _ in range(20):
                    stream = await anyio.connect_tcp("127.0.0.1", listener.port)
                    idle.append(await stack.enter_async_context(stream))
                # Each connection past the 8th closed the oldest idle one.
                for stream in idle[:12]:
                    assert await _until_closed(stream) == b""
                assert guard.connections == 8
                job = await client.create_video(*sandbox.add_track())
                await job
    assert job.resolved_by == "callback" and job.polls == 0
    assert listener.answers == {200: 1}
    assert guard.stats["evicted"] >= 13 and guard.stats["refused"] == 0


async def test_when_every_connection_is_in_a_handler_a_new_one_is_refused() -> None:
    inside = 0
    both_inside = anyio.Event()
    release = anyio.Event()

    async def slow(_request: web.Request) -> web.Response:
        nonlocal inside
        inside += 1
        if inside == 2:
            both_inside.set()
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = GuardedServer(app, "127.0.0.1", 0, max_connections=2, read_timeout=5)
    await server.start()
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def get() -> None:
                async with session.get(f"http://127.0.0.1:{server.port}/slow") as resp:
                    statuses.append(resp.status)

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(get)
                    tg.start_soon(get)
                    await both_inside.wait()
                    async with await anyio.connect_tcp("127.0.0.1", server.port) as third:
                        assert await _until_closed(third) == b""
                    assert server.stats["refused"] == 1 and server.stats["evicted"] == 0
                    release.set()
    finally:
        await server.close()
    assert statuses == [200, 200]


async def _slow_body(host: str, port: int, path: str) -> bytes:
    """A request whose head is complete and whose body never is; the answer's head."""
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\n\r\n".encode()
            + b'{"code": 2'
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive()
        return answer


async def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    async with _serving_listener(read_timeout=0.5) as listener:
        with anyio.fail_after(5):
            path = urlsplit(listener.callback_url).path
            start = anyio.current_time()
            answer = await _slow_body("127.0.0.1", listener.port, path)
            elapsed = anyio.current_time() - start
    assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer
    assert listener.answers == {408: 1}
    assert elapsed >= 0.4  # closed by the deadline (timed_out), not sooner


async def test_the_body_deadline_applies_in_attach_mode_too() -> None:
    app = web.Application()
    listener = CallbackListener(read_timeout=0.5)
    listener.attach(app, public_url="http://127.0.0.1:1")
    # aiohttp then reads the unread body for up to 10 s (lingering): not waited for here.
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        with anyio.fail_after(5):
            answer = await _slow_body("127.0.0.1", port, urlsplit(listener.callback_url).path)
    finally:
        await runner.cleanup()
    assert answer.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_connections": 2.5},
        {"max_connections": True},
        {"max_connections": "8"},
        {"read_timeout": 0},
        {"read_timeout": -1.0},
        {"read_timeout": float("inf")},
        {"read_timeout": float("nan")},
        {"read_timeout": True},
        {"read_timeout": "10"},
    ],
)
async def test_guard_options_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        CallbackListener(**options)


async def test_accept_errors_are_logged_once_per_interval_while_serving(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_serving, "_accept_errors", _serving._AcceptErrorFilter(60.0))
    aio = logging.getLogger("asyncio")
    message = "socket.accept() out of system resource\nsocket: <fake>"
    async with _serving_listener():
        for _ in range(5):
            aio.error(message)
        aio.error("something else")
    aio.error(message)  # not serving: no filter
    records = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert records == [message, "something else", message]


# The acceptance run: a victim limited to 1,024 descriptors, an attacker with 1,100
# connections (each its own process, talking JSON lines).


@pytest.mark.slow
@pytest.mark.parametrize("attack", [[], ["--trickle", "--reopen"]], ids=["idle", "trickle"])
async def test_callbacks_and_submits_survive_1100_held_connections(attack: list[str]) -> None:
    with anyio.fail_after(30):
        async with spawn_victim("victim", "--nofile", "1024") as (victim, from_victim):
            port = (await ask(victim, from_victim, None))["port"]
            async with spawn_victim("attack", str(port), "--connections", "1100", *attack) as (
                attacker,
                from_attacker,
            ):
                ready = await ask(attacker, from_attacker, None)
                settled = await ask(victim, from_victim, "settle")
                result = await ask(victim, from_victim, "jobs 5")
                held = await ask(attacker, from_attacker, "stats")
    jobs = result["jobs"]
    assert ready["connected"] >= 1100 and held["attempted"] >= 1100, (ready, held)
    assert [j.get("error") for j in jobs] == [None] * 5, jobs
    assert all(j["submitted"] for j in jobs)
    assert [j["resolved_by"] for j in jobs] == ["callback"] * 5
    assert max(j["lag"] for j in jobs) < 10
    # Descriptors never ran out, and the log was not flooded.
    assert 0 < settled["fds"] < 1024 and 0 < result["fds_peak"] < 1024, (settled, result)
    assert result["errors"] <= 1, result["error_samples"]
    assert result["guard"]["evicted"] > 0
