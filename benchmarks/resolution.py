"""Polls per job, detection lag and client CPU per job: the SDK's poller and its callback
listener against naive fixed-interval poll loops, measured in one run.

    python -m benchmarks.resolution [--jobs 200] [--scale 0.2]

Render times are drawn from 1-20 s, multiplied by ``--scale`` (as are every strategy's
intervals, so the ratios hold); the sandbox runs in its own process, so the CPU time
measured here is the client's alone. Detection lag = resolution time - server completion.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio

from suno_mp4 import CallbackListener, Client, PollPolicy

from ._common import SandboxProcess, median, pct, sandbox_process, table

Strategy = Callable[[SandboxProcess, list[tuple[str, str]], float], Awaitable[dict[str, float]]]


async def _completions(sb: SandboxProcess, task_ids: list[str]) -> dict[str, float]:
    out = {}
    async with aiohttp.ClientSession(headers=sb.admin_headers) as session:
        for tid in task_ids:
            async with session.get(f"{sb.base_url}/sandbox/tasks/{tid}") as resp:
                out[tid] = float((await resp.json())["completed_at"])
    return out


async def sdk(
    sb: SandboxProcess, tracks: list[tuple[str, str]], scale: float, *, listen: bool
) -> dict[str, float]:
    poll = PollPolicy(
        initial_delay=2.0 * scale,
        max_interval=30.0 * scale,
        fallback_interval=60.0 * scale,
        max_wait=600,
    )
    listener = CallbackListener() if listen else None
    resolved: dict[str, float] = {}
    polls = 0
    cpu0 = time.process_time()
    async with Client(sb.api_key, base_url=sb.base_url, poll=poll, callbacks=listener) as client:
        jobs = []
        async with anyio.create_task_group() as tg:

            async def one(track: tuple[str, str]) -> None:
                job = await client.create_video(*track)
                jobs.append(job)
                await job
                resolved[job.task_id] = time.time()

            for track in tracks:
                tg.start_soon(one, track)
        polls = sum(j.polls for j in jobs)
    cpu = time.process_time() - cpu0
    return {"cpu": cpu, "polls": polls, **{f"t:{k}": v for k, v in resolved.items()}}


async def naive(
    sb: SandboxProcess, tracks: list[tuple[str, str]], scale: float, *, every: float
) -> dict[str, float]:
    """The docs' pattern: each job sleeps a fixed interval, polls, repeats."""
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    resolved: dict[str, float] = {}
    polls = 0
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(track: tuple[str, str]) -> None:
            nonlocal polls
            body = {
                "taskId": track[0],
                "audioId": track[1],
                "callBackUrl": "https://callback.invalid/x",
            }
            async with session.post(f"{sb.base_url}/api/v1/mp4/generate", json=body) as resp:
                tid = (await resp.json())["data"]["taskId"]
            while True:
                await anyio.sleep(every * scale)
                polls += 1
                async with session.get(
                    f"{sb.base_url}/api/v1/mp4/record-info", params={"taskId": tid}
                ) as resp:
                    data = (await resp.json())["data"]
                if data["successFlag"] != "PENDING":
                    resolved[tid] = time.time()
                    return

        async with anyio.create_task_group() as tg:
            for track in tracks:
                tg.start_soon(one, track)
    cpu = time.process_time() - cpu0
    return {"cpu": cpu, "polls": polls, **{f"t:{k}": v for k, v in resolved.items()}}


async def run(jobs: int, scale: float) -> tuple[list[str], list[list[Any]]]:
    render = f"{1.0 * scale},{20.0 * scale}"
    strategies: list[tuple[str, Callable[..., Awaitable[dict[str, float]]], dict[str, Any]]] = [
        ("naive 5 s loop (baseline)", naive, {"every": 5.0}),
        ("naive 1 s loop", naive, {"every": 1.0}),
        ("suno_mp4 polling", sdk, {"listen": False}),
        ("suno_mp4 callbacks", sdk, {"listen": True}),
    ]
    rows = []
    with sandbox_process("--render-time", render, "--seed", "42", "--no-render") as sb:
        for name, fn, kw in strategies:
            tracks = await sb.add_tracks(jobs)
            result = await fn(sb, tracks, scale, **kw)
            done = {k[2:]: v for k, v in result.items() if k.startswith("t:")}
            completed = await _completions(sb, list(done))
            lags = []
            for tid, t in done.items():
                lags.append(max(0.0, t - completed[tid]))
            rows.append(
                [
                    name,
                    len(done),
                    result["polls"] / jobs,
                    median(lags) * 1000,
                    pct(lags, 99) * 1000,
                    result["cpu"] / jobs * 1e6,
                ]
            )
    headers = [
        "strategy",
        "jobs",
        "polls/job",
        "lag p50 (ms)",
        "lag p99 (ms)",
        "client CPU/job (µs)",
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--scale", type=float, default=0.2)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.jobs, args.scale)
    print(f"render times 1-20 s x {args.scale}; {args.jobs} jobs per strategy")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
