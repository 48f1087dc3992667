"""The pytest plugin, used the way a user would: a test file of their own, run by pytest."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_my_bot_makes_a_video(suno_sandbox, suno_client):
    video = await (await suno_client.create_video(*suno_sandbox.add_track()))
    assert video.video_url.startswith(suno_sandbox.base_url)

@pytest.mark.anyio
async def test_my_bot_reports_missing_credits(suno_sandbox, suno_client):
    from suno_mp4 import InsufficientCreditsError
    suno_sandbox.credits = 0
    with pytest.raises(InsufficientCreditsError):
        await suno_client.create_video(*suno_sandbox.add_track())
"""


def test_users_get_sandbox_and_client_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "anyio")
    result.assert_outcomes(passed=2)
