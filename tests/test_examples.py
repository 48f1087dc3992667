"""The README's examples run as written (each in its own process, against the sandbox)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("quickstart.py", "valid until"),
        ("bot_attach.py", "resolved by callback"),
        ("batch.py", "50 videos, 0 failures"),
        ("many_workers.py", "12 videos by 2 workers, 12 resolved by callback"),
        ("fastapi_callbacks.py", "resolved by callback"),
        ("aiohttp_bot.py", "resolved by callback"),
    ],
)
def test_example_runs_as_written(script: str, expect: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout
    if script in ("fastapi_callbacks.py", "aiohttp_bot.py"):
        # Refused exactly as the SDK's own listener refuses them (tests/test_frameworks.py).
        assert "forged 403, unsigned 401, stale 401" in done.stdout
