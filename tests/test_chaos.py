"""Chaos: many jobs against a sandbox that drops, repeats and advances callbacks, answers
5xx/455/429 in bursts, cuts connections and stalls. A short run is part of `make test`;
`make chaos` runs 1,000 jobs and prints the table.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import anyio
import pytest
from suno_mp4_sandbox import Faults, Sandbox

from suno_mp4 import (
    CallbackListener,
    Client,
    MusicVideo,
    PollPolicy,
    RetryPolicy,
    SunoMp4Error,
    TransportError,
    VideoJob,
)

pytestmark = pytest.mark.anyio

FAULTS = {
    "callback_drop": 0.20,
    "callback_duplicate": 0.20,
    "callback_early": 0.10,
    "poll_5xx": 0.05,
    "poll_455": 0.02,
    "reset": 0.01,
    "stall": 0.005,
}


async def run_chaos(jobs: int, seed: int) -> dict[str, Any]:
    """Run ``jobs`` jobs through every fault at once; return the outcome figures."""
    start = time.perf_counter()
    faults = Faults(**FAULTS)  # type: ignore[arg-type]
    async with Sandbox(render_time=(0.1, 1.0), faults=faults, seed=seed) as sb:
        tracks = [sb.add_track() for _ in range(jobs)]
        poll = PollPolicy(initial_delay=0.1, max_interval=1.0, fallback_interval=2.0, max_wait=60)
        retry = RetryPolicy(attempts=8, initial_backoff=0.05, max_backoff=0.5)
        created: list[VideoJob] = []
        submit_errors: Counter[str] = Counter()
        videos: dict[str, MusicVideo] = {}
        errors: dict[str, SunoMp4Error] = {}
        async with Client(
            sb.api_key,
            base_url=sb.base_url,
            callbacks=CallbackListener(),
            poll=poll,
            retry=retry,
            timeout=1.0,
            seed=seed,
        ) as client:
            async with anyio.create_task_group() as tg:

                async def storms() -> None:
                    # 429 bursts: every 1.5 s the API refuses everything for 0.3 s.
                    while True:
                        await anyio.sleep(0.5)
                        sb.faults.rate_limit_storm_until = sb.now() + 0.3
                        await anyio.sleep(1.0)

                async def one(track: tuple[str, str]) -> None:
                    try:
                        job = await client.create_video(*track)
                    except TransportError as exc:
                        # Cut or stalled while submitting: maybe taken, so never re-sent.
                        submit_errors[type(exc).__name__] += 1
                        return
                    created.append(job)
                    try:
                        videos[job.task_id] = await job
                    except SunoMp4Error as exc:
                        errors[job.task_id] = exc

                tg.start_soon(storms)
                with anyio.move_on_after(90):
                    async with anyio.create_task_group() as jobs_tg:
                        for track in tracks:
                            jobs_tg.start_soon(one, track)
                tg.cancel_scope.cancel()
        wrong = sum(1 for tid, v in videos.items() if v.video_url != sb.task(tid).video_url)
        hangs = sum(1 for job in created if job.task_id not in videos and job.task_id not in errors)
        return {
            "jobs": jobs,
            "faults injected": dict(sb.stats.faults),
            "answers 429": sb.stats.answers[429],
            "submits cut (unknown, not re-sent)": sum(submit_errors.values()),
            "created": len(created),
            "resolved": len(videos),
            "failed": len(errors),
            "wrong": wrong,
            "duplicate submits": sum(n - 1 for n in sb.stats.submits.values() if n > 1),
            "hangs": hangs,
            "resolved by callback": sum(1 for j in created if j.resolved_by == "callback"),
            "resolved by poll": sum(1 for j in created if j.resolved_by == "poll"),
            "wall time (s)": round(time.perf_counter() - start, 1),
        }


def _check(result: dict[str, Any]) -> None:
    print()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"| {key:<{width}} | {value} |")
    assert result["created"] + result["submits cut (unknown, not re-sent)"] == result["jobs"]
    assert result["resolved"] == result["created"]  # every created job got its video
    assert result["wrong"] == 0
    assert result["duplicate submits"] == 0
    assert result["hangs"] == 0
    assert result["failed"] == 0


async def test_chaos_short() -> None:
    _check(await run_chaos(150, seed=1))


@pytest.mark.chaos
async def test_chaos_long() -> None:
    _check(await run_chaos(1000, seed=2))
