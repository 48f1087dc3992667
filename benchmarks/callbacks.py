"""Callback lag: from the moment the sandbox finishes a task to the moment the code
awaiting its job wakes up, for the SDK's ``CallbackListener`` and for raw aiohttp (a
tiny callback server setting an event per task), on the same jobs.

    python -m benchmarks.callbacks [--jobs 200] [--runs 3]

Every job is submitted at once; render times are drawn from 0.2-4 s, so callbacks arrive
spread out, as they do in use. Each side of a run gets a fresh sandbox (its own process)
with the same seed: the same render times, in submit order. Lag = the awaiting task's
``time.time()`` after it wakes - the sandbox's ``completed_at`` (the same clock: one
machine). The SDK's safety poll never comes due (``fallback_interval`` 600 s). The sides
alternate; figures are median [min-max] over ``--runs``, never the best run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio

from suno_mp4 import CallbackListener, Client, PollPolicy

from ._common import SandboxProcess, pct, raw_callback_server, sandbox_process, spread, table

RENDER = "0.2,4"
TARGET_P99_MS = 20.0
SIDES = {
    "raw": "raw aiohttp + tiny callback server (baseline)",
    "sdk": "suno_mp4 Client + CallbackListener",
}

Track = tuple[str, str]
Side = Callable[[SandboxProcess, list[Track]], Awaitable[tuple[dict[str, float], int]]]


async def sdk(sb: SandboxProcess, tracks: list[Track]) -> tuple[dict[str, float], int]:
    """When each job's awaiting task woke up, by task id; and the polls sent."""
    poll = PollPolicy(fallback_interval=600, max_wait=600)
    woke: dict[str, float] = {}
    polls = 0

    async def one(track: Track) -> None:
        nonlocal polls
        job = await client.create_video(*track)
        await job
        woke[job.task_id] = time.time()
        polls += job.polls

    listener = CallbackListener()
    async with Client(sb.api_key, base_url=sb.base_url, poll=poll, callbacks=listener) as client:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for track in tracks:
                    tg.start_soon(one, track)
    return woke, polls


async def raw(sb: SandboxProcess, tracks: list[Track]) -> tuple[dict[str, float], int]:
    woke: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    async with (
        raw_callback_server() as (callback_url, events),
        aiohttp.ClientSession(headers=headers) as session,
    ):

        async def one(track: Track) -> None:
            body = {"taskId": track[0], "audioId": track[1], "callBackUrl": callback_url}
            async with session.post(sb.base_url + "/api/v1/mp4/generate", json=body) as resp:
                data = await resp.json()
            task_id = data["data"]["taskId"]
            await events[task_id].wait()
            woke[task_id] = time.time()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for track in tracks:
                    tg.start_soon(one, track)
    return woke, 0


async def lags_ms(side: Side, jobs: int, seed: int) -> tuple[list[float], int]:
    with sandbox_process("--render-time", RENDER, "--seed", str(seed), "--no-render") as sb:
        tracks = await sb.add_tracks(jobs)
        woke, polls = await side(sb, tracks)
        ended = await sb.completed_at(list(woke))
        lags = [max(0.0, t - ended[task_id]) * 1000 for task_id, t in woke.items()]
    if len(lags) != jobs:
        raise RuntimeError(f"{len(lags)} of {jobs} jobs resolved")
    return lags, polls


async def run(jobs: int, runs: int = 3) -> tuple[list[str], list[list[Any]]]:
    figures: dict[str, dict[str, list[float]]] = {
        s: {"p50": [], "p99": [], "max": [], "polls": []} for s in SIDES
    }
    for i in range(runs):
        for name in list(SIDES) if i % 2 == 0 else list(reversed(SIDES)):
            lags, polls = await lags_ms(sdk if name == "sdk" else raw, jobs, seed=i + 1)
            figures[name]["p50"].append(pct(lags, 50))
            figures[name]["p99"].append(pct(lags, 99))
            figures[name]["max"].append(max(lags))
            figures[name]["polls"].append(polls / jobs)
    headers = ["callbacks", "polls/job", "lag p50 (ms)", "lag p99 (ms)", "lag max (ms)"]
    rows: list[list[Any]] = [
        [
            label,
            spread(figures[name]["polls"], 1),
            spread(figures[name]["p50"]),
            spread(figures[name]["p99"]),
            spread(figures[name]["max"]),
        ]
        for name, label in SIDES.items()
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.jobs, args.runs)
    print(f"{args.jobs} jobs, render 0.2-4 s; median [min-max] of {args.runs} alternating runs")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
