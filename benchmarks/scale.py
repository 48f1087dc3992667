"""Many pending jobs: the client's memory growth and event-loop lag with ``--jobs`` jobs
pending against the same client with none, measured in one run.

    python -m benchmarks.scale [--jobs 10000] [--seconds 3]

The sandbox (its own process) renders for 600 s and the poll policy waits 600 s before
the first poll, so every job sits pending while we look. RSS is this process's VmRSS
(``/proc/self/status``) after a ``gc.collect()``; lag is the overshoot of a ticker that
sleeps 10 ms, over ``--seconds``.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import anyio

from suno_mp4 import Client, PollPolicy, VideoJob

from ._common import SandboxProcess, median, pct, rss_mb, sandbox_process, table

TICK = 0.010
TARGET_MB = 30.0
TARGET_LAG_MS = 50.0


async def lag_ms(seconds: float) -> list[float]:
    """Overshoots (ms) of a 10 ms sleep, repeated for ``seconds``."""
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        await anyio.sleep(TICK)
        out.append(max(0.0, time.perf_counter() - start - TICK) * 1000)
    return out


async def submit_all(client: Client, tracks: list[tuple[str, str]]) -> list[VideoJob]:
    jobs: list[VideoJob] = []
    slots = anyio.Semaphore(100)

    async def one(track: tuple[str, str]) -> None:
        async with slots:
            jobs.append(await client.create_video(*track))

    async with anyio.create_task_group() as tg:
        for track in tracks:
            tg.start_soon(one, track)
    return jobs


def _settled_rss() -> float:
    gc.collect()
    return rss_mb()


async def measure(sb: SandboxProcess, n: int, seconds: float) -> dict[str, float]:
    tracks = await sb.add_tracks(n + 1)
    poll = PollPolicy(initial_delay=600, max_interval=600, max_wait=3600)
    async with Client(sb.api_key, base_url=sb.base_url, poll=poll) as client:
        # One job first: every code path warm, the connection pool open.
        warm = await submit_all(client, tracks[:1])
        empty_rss = _settled_rss()
        empty_lag = await lag_ms(seconds)
        start = time.perf_counter()
        jobs = await submit_all(client, tracks[1:])
        submit_s = time.perf_counter() - start
        pending = sum(not j.done() for j in jobs + warm)
        full_rss = _settled_rss()
        full_lag = await lag_ms(seconds)
        pending_after = sum(not j.done() for j in jobs)
    return {
        "empty_rss": empty_rss,
        "full_rss": full_rss,
        "empty_p50": median(empty_lag),
        "empty_p99": pct(empty_lag, 99),
        "full_p50": median(full_lag),
        "full_p99": pct(full_lag, 99),
        "pending": pending - 1,
        "pending_after": pending_after,
        "submit_s": submit_s,
    }


async def run(jobs: int, seconds: float = 3.0) -> tuple[list[str], list[list[Any]]]:
    with sandbox_process("--render-time", "600", "--no-render") as sb:
        m = await measure(sb, jobs, seconds)
    if m["pending_after"] != jobs:
        raise RuntimeError(f"only {m['pending_after']} of {jobs} jobs stayed pending")
    growth = m["full_rss"] - m["empty_rss"]
    headers = [
        "client state",
        "pending jobs",
        "RSS (MB)",
        "RSS growth (MB)",
        "KB/job",
        "loop lag p50 (ms)",
        "loop lag p99 (ms)",
    ]
    rows: list[list[Any]] = [
        ["empty client (baseline)", 0, m["empty_rss"], 0.0, "", m["empty_p50"], m["empty_p99"]],
        [
            f"{jobs:,} pending jobs",
            int(m["pending_after"]),
            m["full_rss"],
            growth,
            growth * 1024 / jobs,
            m["full_p50"],
            m["full_p99"],
        ],
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.jobs, args.seconds)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
