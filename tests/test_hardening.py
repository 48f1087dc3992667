"""Hardening: fuzzed callbacks, floods of unknown task ids, leaks, and the API key's secrecy."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suno_mp4_sandbox import Sandbox

from suno_mp4 import CallbackListener, Client, MemoryJobStore, PollPolicy
from suno_mp4._callbacks import sign

from .conftest import FAST_RETRY

pytestmark = pytest.mark.anyio

KEY = b"fuzz-key"


@pytest.fixture
async def target() -> AsyncIterator[tuple[Client, CallbackListener, str]]:
    async with Sandbox(render_time=60) as sb:
        listener = CallbackListener(hmac_key=KEY)
        poll = PollPolicy(initial_delay=60, fallback_interval=60, max_wait=600)
        async with Client(sb.api_key, base_url=sb.base_url, callbacks=listener, poll=poll) as c:
            job = await c.create_video(*sb.add_track())
            yield c, listener, job.task_id


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"code": _json_values, "msg": _json_values, "data": _json_values}).map(
        lambda v: json.dumps(v).encode()
    ),
)
_header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(
    max_examples=int(os.environ.get("SUNO_MP4_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=_bodies,
    path=st.sampled_from(["secret", "wrong", "", "secret/extra", "%00", "..", "secret?x=1"]),
    timestamp=_header_text,
    signature=_header_text,
    content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
    signed=st.booleans(),
)
async def test_fuzzed_callbacks_never_5xx_never_resolve(
    target: tuple[Client, CallbackListener, str],
    body: bytes,
    path: str,
    timestamp: str,
    signature: str,
    content_type: str,
    signed: bool,
) -> None:
    client, listener, task_id = target
    base, secret = listener.callback_url.rsplit("/", 1)
    url = f"{base}/{path.replace('secret', secret)}"
    if signed:  # a valid signature for the real task: the body must still be checked
        timestamp = str(int(time.time()))
        signature = sign(KEY, task_id, timestamp)
    headers = {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": signature}
    if content_type:
        headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        await r.read()
        assert r.status < 500
    job = client._registry.get(task_id)
    assert job is not None and not job.done()
    assert client._registry.stats["resolved"] == 0


async def test_a_flood_of_unknown_task_ids_stays_bounded_and_real_callbacks_pass() -> None:
    async with Sandbox(render_time=0.5) as sb:
        listener = CallbackListener()
        poll = PollPolicy(fallback_interval=60, max_wait=600)
        async with Client(sb.api_key, base_url=sb.base_url, callbacks=listener, poll=poll) as c:
            c._registry._early_max = 1000  # a small cap, so the test floods past it quickly
            job = await c.create_video(*sb.add_track())
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            async with aiohttp.ClientSession() as session:

                async def flood(offset: int) -> None:
                    for i in range(offset, offset + 1500):
                        body = {
                            "code": 200,
                            "msg": "",
                            "data": {"task_id": f"junk-{i}", "video_url": "http://x.invalid/v.mp4"},
                        }
                        async with session.post(listener.callback_url, json=body) as r:
                            assert r.status == 200

                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tg:
                        for k in range(4):
                            tg.start_soon(flood, k * 1500)
                        video = await job  # the real callback gets through during the flood
            grown = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            assert c._registry.early_count <= 1000
            assert c._registry.stats["early_dropped"] >= 5000
            assert video.video_url == sb.task(job.task_id).video_url
            assert grown < 5_000_000, grown


def _sdk_memory() -> int:
    """Bytes held by allocations made in the SDK's code (the in-process sandbox excluded)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/suno_mp4/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _tasks() -> int:
    """The SDK's running tasks (anyio names them after their function), not the sandbox's
    nor aiohttp's short-lived ones."""
    import asyncio

    return sum(t.get_name().startswith("suno_mp4.") for t in asyncio.all_tasks())


async def test_create_cancel_cycles_leave_no_growth() -> None:
    cycles = int(os.environ.get("SUNO_MP4_CYCLES", "1000"))
    async with Sandbox(render_time=0.01) as sb:
        tracks = [sb.add_track() for _ in range(cycles)]
        poll = PollPolicy(initial_delay=0.05, max_interval=0.2, max_wait=1.0)
        # The store keeps a bounded number of records (for dedupe); bound it low here.
        store = MemoryJobStore(max_records=500)
        async with Client(
            sb.api_key, base_url=sb.base_url, poll=poll, retry=FAST_RETRY, store=store
        ) as c:
            # Warm up the connection pool and the code paths, then measure.
            for track in tracks[:20]:
                await (await c.create_video(*track))
            gc.collect()
            tracemalloc.start()
            mem0, fds0, tasks0 = _sdk_memory(), _fds(), _tasks()
            for track in tracks[20:]:
                job = await c.create_video(*track)
                with anyio.move_on_after(0.0005):
                    await job  # give up waiting almost at once
            # Every job resolves or reaches its 1 s deadline; then all bookkeeping is gone.
            with anyio.fail_after(30):
                # Waiting for deadlines to pass: time itself is the event here.
                while len(c._registry) or len(c._poller):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            mem1, fds1, tasks1 = _sdk_memory(), _fds(), _tasks()
            tracemalloc.stop()
        growth = f"memory {mem1 - mem0:+,} B, fds {fds1 - fds0:+}, tasks {tasks1 - tasks0:+}"
        print(f"\n{cycles} cycles: {growth}")
        assert tasks1 - tasks0 <= 0
        assert fds1 - fds0 <= 2
        # Only the bounded cache of recently resolved ids (at most 10,000) and the store's
        # bounded records may grow.
        assert mem1 - mem0 < 150_000 + 120 * min(cycles, 10_000)


async def test_the_api_key_never_appears_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    from suno_mp4 import AuthenticationError, ServerError

    caplog.set_level(logging.DEBUG)
    async with Sandbox(render_time=0.05) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, retry=FAST_RETRY) as c:
            await (await c.create_video(*sb.add_track()))
            sb.faults.poll_5xx = 1.0
            with pytest.raises(ServerError) as info:
                await c.get_video_details("anything")
            logging.getLogger("test").error("got %r", info.value)
        async with Client("sk-bad-0123456789", base_url=sb.base_url) as bad:
            with pytest.raises(AuthenticationError) as auth:
                await bad.create_video(*sb.add_track())
            logging.getLogger("test").error("got %r / %s", auth.value, auth.value)
    text = caplog.text
    assert "retrying" in text and "got " in text  # the log did record the faults
    assert sb.api_key not in text and "sk-bad-0123456789" not in text
