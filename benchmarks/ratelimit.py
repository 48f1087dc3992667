"""Rate limits: the throughput a ``RateLimit(20, 1.0)`` client achieves against a sandbox
enforcing 20 requests per 1 s (sliding window), and the 429 answers it draws.

    python -m benchmarks.ratelimit [--submits 200]

The first 20 submits go out at once; the rest need (n - 20) / 20 seconds at best, so the
throughput reported is (n - limit) / elapsed, "after the first burst" (as
tests/test_resolution.py measures it); the whole-run n / elapsed is shown beside it. Render
time is 600 s and the first poll 600 s out: only submits are on the wire. The 429 count is
the sandbox's own (``/sandbox/stats`` answers).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from suno_mp4 import Client, PollPolicy, RateLimit

from ._common import sandbox_process, table

LIMIT = 20
PER = 1.0
TARGET = 0.95


async def run(submits: int) -> tuple[list[str], list[list[Any]]]:
    poll = PollPolicy(initial_delay=600, max_wait=3600)
    with sandbox_process(
        "--rate-limit", f"{LIMIT}/{PER:g}", "--render-time", "600", "--no-render"
    ) as sb:
        tracks = await sb.add_tracks(submits)
        async with Client(
            sb.api_key, base_url=sb.base_url, rate_limit=RateLimit(LIMIT, PER), poll=poll
        ) as client:
            with anyio.fail_after(submits / LIMIT * PER * 3 + 30):
                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for track in tracks:
                        tg.start_soon(client.create_video, *track)
                elapsed = time.perf_counter() - start
        stats = await sb.stats()
    answers = stats["answers"]
    too_many = int(answers.get("429", 0))
    accepted = int(stats["submits_accepted"])
    limit = LIMIT / PER
    after_burst = (submits - LIMIT) / elapsed
    headers = [
        f"{submits} submits vs a {LIMIT}/{PER:g} s limit",
        "submits/s after 1st burst",
        "submits/s whole run",
        "÷ limit (after burst)",
        "answers of 429",
        "accepted",
    ]
    rows: list[list[Any]] = [
        ["the limit itself (baseline)", limit, "", 1.0, 0, ""],
        [
            f"suno_mp4 RateLimit({LIMIT}, {PER:g})",
            after_burst,
            submits / elapsed,
            after_burst / limit,
            too_many,
            accepted,
        ],
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submits", type=int, default=200)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.submits)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
