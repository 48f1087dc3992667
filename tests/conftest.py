"""Shared fixtures: every test runs on asyncio through the anyio pytest plugin, against a
real sandbox server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

# Real rendering costs seconds per video: tests that want it ask for it (render=True).
# Subprocesses (the CLI, the sandbox command) inherit this.
os.environ.setdefault("SUNO_MP4_SANDBOX_RENDER", "0")

from suno_mp4_sandbox import Sandbox

from suno_mp4 import Client, PollPolicy, RetryPolicy

#: Quick polling for tests: renders take a fraction of a second in the sandbox.
FAST_POLL = PollPolicy(initial_delay=0.05, max_interval=0.3, factor=1.5, max_wait=60)
FAST_RETRY = RetryPolicy(attempts=4, initial_backoff=0.01, max_backoff=0.05)


#: Tests that start a redis-server. Without one (and outside CI, which installs it) they
#: are skipped, so a developer without root can run the rest.
_NEEDS_REDIS = ("test_redis.py", "test_scaleout.py", "[redis]", "many_workers.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import shutil

    if (
        shutil.which("redis-server")
        or os.environ.get("SUNO_MP4_REDIS_SERVER")
        or os.environ.get("CI")
    ):
        return
    skip = pytest.mark.skip(reason="no redis-server: sudo apt-get install redis-server")
    for item in items:
        if any(part in item.nodeid for part in _NEEDS_REDIS):
            item.add_marker(skip)


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp only runs on asyncio.
    return "asyncio"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client, for talking to a sandbox as any program would."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(render_time=0.1, seed=1) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[Client]:
    async with Client(
        sandbox.api_key, base_url=sandbox.base_url, poll=FAST_POLL, retry=FAST_RETRY, seed=1
    ) as c:
        yield c
