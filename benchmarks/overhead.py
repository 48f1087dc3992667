"""Client CPU per job: the SDK (``Client`` + ``CallbackListener``) against a minimal raw
aiohttp client doing the same work, measured in one run (alternating, median of ``--runs``).

    python -m benchmarks.overhead [--jobs 2000] [--runs 3]

Zero render time, no rendering; both submit with at most 50 jobs in flight (submit +
callback) and resolve each job on its callback. The raw client POSTs to
``/api/v1/mp4/generate`` with a ``callBackUrl`` pointing at its own tiny aiohttp server on
127.0.0.1:0, which records the task ids and sets an event per job. The sandbox runs in its
own process, so ``time.process_time()`` here is the client's CPU alone.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from suno_mp4 import CallbackListener, Client, PollPolicy

from ._common import SandboxProcess, median, sandbox_process, table

IN_FLIGHT = 50
TARGET = 1.25


async def sdk(sb: SandboxProcess, tracks: list[tuple[str, str]]) -> float:
    """CPU seconds for the SDK to submit and resolve every track's job."""
    # The safety poll never comes due within the run: every job resolves on its callback.
    poll = PollPolicy(fallback_interval=600, max_wait=600)
    slots = asyncio.Semaphore(IN_FLIGHT)
    done = 0
    cpu0 = time.process_time()
    async with Client(
        sb.api_key, base_url=sb.base_url, poll=poll, callbacks=CallbackListener()
    ) as client:

        async def one(track: tuple[str, str]) -> None:
            nonlocal done
            async with slots:
                job = await client.create_video(*track)
                await job
                done += 1

        with anyio.fail_after(300):
            async with anyio.create_task_group() as tg:
                for track in tracks:
                    tg.start_soon(one, track)
    cpu = time.process_time() - cpu0
    assert done == len(tracks), (done, len(tracks))
    return cpu


async def raw(sb: SandboxProcess, tracks: list[tuple[str, str]]) -> float:
    """The same with bare aiohttp: a session for the POSTs, a tiny server for callbacks."""
    events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
    received: list[str] = []

    async def callback(request: web.Request) -> web.Response:
        body = await request.json()
        task_id = body["data"]["task_id"]
        received.append(task_id)
        events[task_id].set()
        return web.json_response({"ok": True})

    slots = asyncio.Semaphore(IN_FLIGHT)
    done = 0
    cpu0 = time.process_time()
    app = web.Application()
    app.router.add_post("/cb", callback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        callback_url = f"http://127.0.0.1:{port}/cb"
        headers = {"Authorization": f"Bearer {sb.api_key}"}
        url = f"{sb.base_url}/api/v1/mp4/generate"
        async with aiohttp.ClientSession(headers=headers) as session:

            async def one(track: tuple[str, str]) -> None:
                nonlocal done
                async with slots:
                    body = {"taskId": track[0], "audioId": track[1], "callBackUrl": callback_url}
                    async with session.post(url, json=body) as resp:
                        data = await resp.json()
                    if data.get("code") != 200:
                        raise RuntimeError(f"submit refused: {data}")
                    await events[data["data"]["taskId"]].wait()
                    done += 1

            with anyio.fail_after(300):
                async with anyio.create_task_group() as tg:
                    for track in tracks:
                        tg.start_soon(one, track)
    finally:
        await runner.cleanup()
    cpu = time.process_time() - cpu0
    assert done == len(tracks), (done, len(tracks))
    return cpu


async def run(jobs: int, runs: int = 1) -> tuple[list[str], list[list[Any]]]:
    raw_cpu: list[float] = []
    sdk_cpu: list[float] = []
    with sandbox_process("--render-time", "0", "--no-render") as sb:
        for _ in range(runs):
            raw_cpu.append(await raw(sb, await sb.add_tracks(jobs)) / jobs)
            sdk_cpu.append(await sdk(sb, await sb.add_tracks(jobs)) / jobs)
    base, ours = median(raw_cpu), median(sdk_cpu)
    headers = ["client (callbacks, 0 s render)", "CPU/job (µs)", "vs raw", "target"]
    rows: list[list[Any]] = [
        ["raw aiohttp + tiny callback server (baseline)", base * 1e6, 1.0, ""],
        ["suno_mp4 Client + CallbackListener", ours * 1e6, ours / base, f"<= {TARGET}x"],
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.jobs, args.runs)
    print(f"{args.jobs} jobs per client, median of {args.runs} alternating runs")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
