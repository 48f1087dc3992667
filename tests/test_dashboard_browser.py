"""The dashboard in a real browser: Playwright driving the system's Chromium (Debian's
``chromium`` package; Playwright's own browser download is not used) against a sandbox
that renders real videos.

``make test`` installs Chromium where it can (root, as in CI). Elsewhere the test is
skipped with the command that installs it, or point ``SUNO_MP4_CHROMIUM`` at a Chromium
or Chrome binary. ``SUNO_MP4_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also writes the
screenshot the README shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from suno_mp4_sandbox import Sandbox

from suno_mp4 import (
    CallbackListener,
    Client,
    InsufficientCreditsError,
    PollPolicy,
    VideoGenerationError,
)

pytest.importorskip("imageio_ffmpeg")
playwright = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.anyio

CHROMIUM_ENV = "SUNO_MP4_CHROMIUM"
SCREENSHOT_ENV = "SUNO_MP4_DASHBOARD_SCREENSHOT"
#: A headless Chromium that reaches nothing but the sandbox: without the background
#: networking flags it calls Google's services at start and logs refusals. Videos start
#: muted without a click, as a person's first visit would not give one.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
#: Polls quickly, and a dropped callback is made up for by a poll within half a second.
POLL = PollPolicy(initial_delay=0.05, max_interval=0.3, fallback_interval=0.5, max_wait=60)
#: Markup in user input must show as the characters it is.
AUTHOR = "<b>DJ Sandbox</b>"
#: Playwright's waits (ms): a render of two seconds of video, on a busy test machine.
SLOW = 45_000


def chromium_path() -> str:
    found = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    if found:
        return found
    reason = f"no chromium: sudo apt-get install chromium (or set {CHROMIUM_ENV})"
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI installs it (make test): missing there is a failure
    pytest.skip(reason)


@asynccontextmanager
async def browser_page() -> AsyncIterator[playwright.Page]:
    """A fresh page of a fresh headless Chromium (its own temporary profile)."""
    executable = chromium_path()
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(SLOW)
            yield page
        finally:
            await browser.close()


async def test_dashboard_shows_tasks_plays_their_video_and_switches_faults(
    tmp_path: Path,
) -> None:
    expect = playwright.expect
    expect.set_options(timeout=SLOW)  # its own default is 5 s, less than a slow render
    problems: list[str] = []
    async with (
        Sandbox(render=True, render_time=0) as sb,
        Client(sb.api_key, base_url=sb.base_url, callbacks=CallbackListener(), poll=POLL) as client,
        browser_page() as page,
    ):
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
        await page.goto(sb.dashboard_url)
        await expect(page.locator("#status")).to_contain_text("live")
        await expect(page.locator("#credits")).to_have_text(f"{sb.credits:,}")

        # A task submitted through the SDK shows up, finishes, and its video plays.
        first = await client.create_video(
            *sb.add_track(title="Dashboard", duration=2.0), author=AUTHOR, domain_name="dash.io"
        )
        row = page.locator(f'tr[data-task-id="{first.task_id}"]')
        await expect(row.locator(".badge")).to_have_text("SUCCESS")
        await expect(row.locator(".author-name")).to_have_text(AUTHOR)
        assert await row.locator("td.author b").count() == 0
        await expect(row.locator(".domain")).to_have_text("dash.io")
        await expect(row.locator(".events")).to_have_text("#1 HTTP 200")
        with anyio.fail_after(30):
            await first
        assert first.resolved_by == "callback"
        video = await row.locator("video").element_handle()
        assert video is not None
        await page.wait_for_function("v => v.currentTime > 0.5", arg=video)
        assert await video.evaluate("v => v.videoWidth") == 720

        # "Drop" in the page: the next task's callback is never sent; a poll finds it.
        async with page.expect_response(lambda r: r.url.endswith("/sandbox/faults")) as sent:
            await page.locator("#callback-drop").check()
        assert (await sent.value).ok and sb.faults.callback_drop == 1
        second = await client.create_video(*sb.add_track(duration=1.0))
        with anyio.fail_after(30):
            await second
        assert second.resolved_by == "poll"
        row = page.locator(f'tr[data-task-id="{second.task_id}"]')
        await expect(row.locator(".events")).to_have_text("dropped (fault)")

        # Back on: a failed render is called back with its reason.
        async with page.expect_response(lambda r: r.url.endswith("/sandbox/faults")):
            await page.locator("#callback-drop").uncheck()
        third = await client.create_video(*sb.add_track(fail="the audio could not be decoded"))
        with anyio.fail_after(30), pytest.raises(VideoGenerationError):
            await third
        row = page.locator(f'tr[data-task-id="{third.task_id}"]')
        await expect(row.locator(".badge")).to_have_text("GENERATE_MP4_FAILED")
        await expect(row.locator(".error")).to_have_text("the audio could not be decoded")

        # Credits set to 0 in the page: the next submit is refused with 402.
        async with page.expect_response(lambda r: r.url.endswith("/sandbox/credits")):
            await page.locator("#credits-zero").click()
        with pytest.raises(InsufficientCreditsError):
            await client.create_video(*sb.add_track())
        await expect(page.locator("#credits")).to_have_text("0")

        await page.locator("#storm-seconds").fill("30")
        async with page.expect_response(lambda r: r.url.endswith("/sandbox/faults")):
            await page.locator("#storm-start").click()
        await expect(page.locator("#storm-state")).to_contain_text("answering 429")
        await expect(page.locator("#stats")).to_contain_text("3 tasks")
        shot = await page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    assert shot.startswith(b"\x89PNG") and not problems, problems
    if target := os.environ.get(SCREENSHOT_ENV):
        Path(target).write_bytes(shot)
