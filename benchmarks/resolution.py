"""Resolution against the real sandbox: poll schedules side by side on three render-time
spreads, every strategy given the same jobs (paired draws: the same seed, so the same render
times, submitted at the same pace).

    python -m benchmarks.resolution [--jobs 600] [--runs 3] [--scale 0.05] [--interval 0.5]

Each run starts a sandbox process (``--no-render``) whose tracks each render for exactly
their drawn time, and streams ``--jobs`` submits, one every ``--interval`` seconds. Strategies:

- the SDK's default ``PollPolicy()`` (the learned schedule, starting cold in every run),
- the SDK's old default, ``PollPolicy(schedule="geometric")`` (2 s, x1.5, cap 30 s),
- the bound: a client polling on the schedule planned offline from the true distribution
  at 3 polls/job (``suno_mp4._plan``, fed 20,000 draws of the spread),
- the fixed loop spending what the learned schedule spent (its interval found on a
  simulation of the same renders), and fixed loops of 1, 2, 5 and 10 s: plain aiohttp
  clients, a task per job sleeping between polls (what a user writes in five lines).

All times are multiplied by ``--scale`` (renders, intervals, the policy's bounds) so a run
takes seconds; lags are reported divided by it, in the spread's own seconds. The first 100
jobs are a warm-up, not counted for any strategy. Lag = when the client knew - when the
sandbox finished. Client CPU is this process's (the sandbox runs in its own). Each figure is
the median [min-max] over the runs.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from suno_mp4 import Client, PollPolicy
from suno_mp4._plan import Plan
from suno_mp4._poller import lane

from ._common import SandboxProcess, sandbox_process, spread, table
from .schedules import BUDGET, SPREADS, WARM_UP, fixed_loop_at, optimal_schedule

LEARNED = "SDK default (learned)"
BOUND = "bound: planned on the true distribution"
FIXED = "fixed loop at the learned budget"

#: One job's figures: (polls, seconds from the sandbox's end of render to the client's
#: knowing it); a run's: those, in submit order, and the client's CPU seconds.
Run = tuple[list[tuple[int, float]], float]
Ages = Callable[[int], Iterator[float]]


async def _stream(count: int, every: float, job: Callable[[int], Awaitable[None]]) -> None:
    """Start ``job(i)`` at ``i * every`` seconds from now, and wait for all of them."""
    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            await anyio.sleep(max(0.0, start + i * every - time.monotonic()))
            tg.start_soon(job, i)


async def sdk(
    sb: SandboxProcess, tracks: list[tuple[str, str]], pace: float, policy: PollPolicy
) -> Run:
    known: dict[int, tuple[str, int, float]] = {}
    cpu = time.process_time()
    async with Client(sb.api_key, base_url=sb.base_url, poll=policy) as client:

        async def one(i: int) -> None:
            job = await client.create_video(*tracks[i])
            await job
            known[i] = (job.task_id, job.polls, time.time())

        await _stream(len(tracks), pace, one)
    cpu = time.process_time() - cpu
    return await _lags(sb, known, len(tracks)), cpu


async def loop(sb: SandboxProcess, tracks: list[tuple[str, str]], pace: float, ages: Ages) -> Run:
    """A plain aiohttp client: a task per job, sleeping until each age of ``ages(i)``."""
    known: dict[int, tuple[str, int, float]] = {}
    cpu = time.process_time()
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> None:
            body = {"taskId": tracks[i][0], "audioId": tracks[i][1]}
            body["callBackUrl"] = "https://callback.invalid/x"
            async with session.post(f"{sb.base_url}/api/v1/mp4/generate", json=body) as resp:
                tid = (await resp.json())["data"]["taskId"]
            submitted = time.monotonic()
            for polls, age in enumerate(ages(i), start=1):
                await anyio.sleep(max(0.0, submitted + age - time.monotonic()))
                url = f"{sb.base_url}/api/v1/mp4/record-info"
                async with session.get(url, params={"taskId": tid}) as resp:
                    data = (await resp.json())["data"]
                if data["successFlag"] != "PENDING":
                    known[i] = (tid, polls, time.time())
                    return

        await _stream(len(tracks), pace, one)
    cpu = time.process_time() - cpu
    return await _lags(sb, known, len(tracks)), cpu


async def _lags(
    sb: SandboxProcess, known: dict[int, tuple[str, int, float]], jobs: int
) -> list[tuple[int, float]]:
    if len(known) != jobs:
        raise RuntimeError(f"only {len(known)} of {jobs} jobs resolved")
    ended = await sb.completed_at([tid for tid, _, _ in known.values()])
    return [(known[i][1], max(0.0, known[i][2] - ended[known[i][0]])) for i in range(jobs)]


def every(seconds: float) -> Ages:
    def ages(i: int) -> Iterator[float]:
        k = 1
        while True:
            yield k * seconds
            k += 1

    return ages


def planned(plan_ages: Callable[[float], tuple[float, ...]], then: float) -> Ages:
    def ages(i: int) -> Iterator[float]:
        points = plan_ages(lane(str(i)))
        yield from points
        last = points[-1] if points else 0.0
        while True:
            last += then
            yield last

    return ages


def figures(run: Run, scale: float) -> dict[str, float]:
    counted = run[0][WARM_UP:]
    lags = sorted(lag / scale for _, lag in counted)
    return {
        "polls": sum(p for p, _ in counted) / len(counted),
        "p50": lags[len(lags) // 2],
        "p95": lags[int(len(lags) * 0.95)],
        "max": lags[-1],
        "cpu": run[1] / len(run[0]) * 1e6,
    }


def spread_sandbox() -> AbstractContextManager[SandboxProcess]:
    """A sandbox process whose tracks render for their ``duration`` (and draw nothing)."""
    return sandbox_process(
        "--render-time", "0", "--render-time-per-audio-second", "1", "--no-render"
    )


def scaled_policy(scale: float, **kwargs: Any) -> PollPolicy:
    """``PollPolicy(**kwargs)`` with its bounds scaled in time like the renders."""
    return PollPolicy(initial_delay=2 * scale, max_interval=30 * scale, max_wait=3600.0, **kwargs)


async def fixed_at_budget(
    sb: SandboxProcess, renders: list[float], pace: float, scale: float, polls: float
) -> dict[str, float]:
    """The fixed loop spending ``polls`` per job on these renders, on fresh tracks."""
    same, _ = fixed_loop_at(renders, pace, polls)
    tracks = await sb.add_tracks(len(renders), each=[{"duration": r} for r in renders])
    return figures(await loop(sb, tracks, pace, every(same)), scale)


async def _one_run(
    renders: list[float], pace: float, scale: float, bound: Plan
) -> dict[str, dict[str, float]]:
    """Every strategy on these renders, each with fresh tracks of the same render times."""
    out: dict[str, dict[str, float]] = {}
    durations = [{"duration": r} for r in renders]  # each track renders for its duration
    with spread_sandbox() as sb:
        strategies: list[tuple[str, Callable[[list[tuple[str, str]]], Awaitable[Run]]]] = [
            (LEARNED, lambda t: sdk(sb, t, pace, scaled_policy(scale))),
            (
                "SDK old default (geometric)",
                lambda t: sdk(sb, t, pace, scaled_policy(scale, schedule="geometric")),
            ),
            (
                BOUND,
                lambda t: loop(sb, t, pace, planned(bound.ages, scale)),
            ),
        ]
        strategies += [
            (f"fixed {s} s loop", lambda t, s=s: loop(sb, t, pace, every(s * scale)))
            for s in (1, 2, 5, 10)
        ]
        for label, strategy in strategies:
            out[label] = figures(
                await strategy(await sb.add_tracks(len(renders), each=durations)), scale
            )
        polls = out[LEARNED]["polls"]
        out[FIXED] = await fixed_at_budget(sb, renders, pace, scale, polls)
    return out


#: The per-run table's columns (``run``'s ``paired``).
PAIRED = [
    "spread",
    "run (seed)",
    "learned p95 (s)",
    "fixed loop at its budget p95 (s)",
    "learned - loop (s)",
    "learned p50 vs bound",
]


async def run(
    jobs: int,
    runs: int,
    scale: float,
    interval: float,
    paired: list[list[Any]] | None = None,
) -> tuple[list[str], list[list[Any]]]:
    """The table: every strategy, median [min-max] over the runs. ``paired`` gets a row per
    spread and run: the learned schedule against the fixed loop and the bound on the same
    renders (columns ``PAIRED``)."""
    rows: list[list[Any]] = []
    for name, draw in SPREADS.items():
        truth = [draw(random.Random(10_000 + i)) * scale for i in range(20_000)]
        bound = optimal_schedule(truth, BUDGET)
        figures: dict[str, list[dict[str, float]]] = {}
        for seed in range(runs):
            rng = random.Random(seed)
            renders = [draw(rng) * scale for _ in range(jobs)]
            results = await _one_run(renders, interval * scale, scale, bound)
            for label, result in results.items():
                figures.setdefault(label, []).append(result)
            if paired is not None:
                learned, loop_p95 = results[LEARNED], results[FIXED]["p95"]
                p50 = learned["p50"] / results[BOUND]["p50"] - 1
                paired.append(
                    [
                        name,
                        seed,
                        f"{learned['p95']:.2f}",
                        f"{loop_p95:.2f}",
                        f"{learned['p95'] - loop_p95:+.2f}",
                        f"{100 * p50:+.1f} %",
                    ]
                )
        for label, results in figures.items():
            rows.append(
                [name, label]
                + [spread(r[k] for r in results) for k in ("polls", "p50", "p95", "max", "cpu")]
            )
    headers = ["spread", "strategy", "polls/job", "lag p50 (s)", "lag p95 (s)", "lag max (s)"]
    return [*headers, "client CPU/job (µs)"], rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between submits")
    parser.add_argument("--plot", type=Path, help="write the polls-vs-lag plot here (PNG)")
    args = parser.parse_args(argv)
    paired: list[list[Any]] = []
    headers, rows = anyio.run(run, args.jobs, args.runs, args.scale, args.interval, paired)
    print(table(headers, rows))
    print()
    print(table(PAIRED, paired))
    if args.plot:
        from .plot import polls_vs_lag

        print(polls_vs_lag(headers, rows, args.plot))


if __name__ == "__main__":
    main()
