"""pytest plugin: ``suno_sandbox`` and ``suno_client`` fixtures for testing your own code
against the local sandbox (no paid API key, no network beyond 127.0.0.1).

Installed with the ``suno-mp4-sandbox`` distribution (entry point ``pytest11``), never
with the SDK alone. Tests using the fixtures run on the anyio pytest plugin: mark them
``@pytest.mark.anyio``. The SDK runs on asyncio only (aiohttp): under another anyio
backend (trio, when it is installed) the fixtures skip the test instead of failing it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from suno_mp4 import Client

    from ._server import Sandbox


@pytest.fixture
async def suno_sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    """A running sandbox on a free loopback port; tune it through its attributes
    (``faults``, ``credits``, ``maintenance``) and add tracks with ``add_track()``."""
    from ._server import Sandbox

    _require_asyncio(request)
    async with Sandbox(render_time=0.05) as sandbox:
        yield sandbox


@pytest.fixture
async def suno_client(suno_sandbox: Sandbox) -> AsyncIterator[Client]:
    """A :class:`suno_mp4.Client` wired to ``suno_sandbox``, polling quickly."""
    from suno_mp4 import Client, PollPolicy

    poll = PollPolicy(initial_delay=0.05, max_interval=0.5, max_wait=60)
    async with Client(suno_sandbox.api_key, base_url=suno_sandbox.base_url, poll=poll) as client:
        yield client


def _require_asyncio(request: pytest.FixtureRequest) -> None:
    if "anyio_backend" not in request.fixturenames:
        return
    backend = request.getfixturevalue("anyio_backend")
    name = backend[0] if isinstance(backend, tuple) else backend
    if name != "asyncio":
        pytest.skip(f"suno-mp4 runs on asyncio only (aiohttp), not {name}")
