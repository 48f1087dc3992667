"""Shared fixtures: every test runs on asyncio through the anyio pytest plugin."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp only runs on asyncio.
    return "asyncio"
