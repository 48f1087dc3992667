"""pytest plugin: ``suno_sandbox`` and ``suno_client`` fixtures for testing your own code
against the local sandbox (no paid API key, no network beyond 127.0.0.1).

Installed with the package (entry point ``pytest11``). Tests using the fixtures run on
the anyio pytest plugin: mark them ``@pytest.mark.anyio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._client import Client
    from .sandbox import Sandbox


@pytest.fixture
async def suno_sandbox() -> AsyncIterator[Sandbox]:
    """A running sandbox on a free loopback port; tune it through its attributes
    (``faults``, ``credits``, ``maintenance``) and add tracks with ``add_track()``."""
    from .sandbox import Sandbox

    async with Sandbox(render_time=0.05) as sandbox:
        yield sandbox


@pytest.fixture
async def suno_client(suno_sandbox: Sandbox) -> AsyncIterator[Client]:
    """A :class:`suno_mp4.Client` wired to ``suno_sandbox``, polling quickly."""
    from ._client import Client
    from ._policies import PollPolicy

    poll = PollPolicy(initial_delay=0.05, max_interval=0.5, max_wait=60)
    async with Client(suno_sandbox.api_key, base_url=suno_sandbox.base_url, poll=poll) as client:
        yield client
