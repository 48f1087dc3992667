"""Many pending jobs: memory per pending job and event-loop lag, the SDK against a raw
aiohttp client holding the same pending state; every measurement in a fresh process.

    python -m benchmarks.scale [--jobs 10000] [--runs 3] [--seconds 3]

The sandbox (its own process) renders for an hour, so every job stays pending. This
process registers the tracks; the measuring processes never made those requests (a
process that did would reuse the memory they freed, and look smaller). Each measuring
process loads the track list, opens its client, submits one job (every code path warm,
the connection pool open), takes its baseline, then submits ``--jobs`` more (100 at a
time) and measures again:

- RSS: VmRSS (``/proc/self/status``) after ``gc.collect()``; growth / jobs = KB per job,
  what the process really pays, allocator slack included;
- live: ``tracemalloc`` (started at the baseline, in a process of its own since tracing
  costs memory too): the bytes the objects kept alive hold, no slack;
- lag: the overshoot of a ticker sleeping 10 ms, for ``--seconds``, with and without the
  jobs pending.

The raw client POSTs the same bodies and keeps, per pending job, what a hand-written
poller needs: a dict task id -> (track, deadline) and a heap of (next poll, task id).
Runs alternate the two sides; figures are median [min-max] over ``--runs``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from suno_mp4 import Client, PollPolicy
from suno_mp4._client import NO_CALLBACK_URL

from ._common import median, pct, proc_status_kb, sandbox_process, spread, table

TICK = 0.010
IN_FLIGHT = 100
TARGET_KB = 2.5
TARGET_LAG_MS = 50.0
MODES = {
    "raw": "raw aiohttp, dict + heap (baseline)",
    "sdk": "suno_mp4 Client (polling)",
}
ROOT = Path(__file__).resolve().parent.parent

Track = tuple[str, str]


async def lag_ms(seconds: float) -> list[float]:
    """Overshoots (ms) of a 10 ms sleep, repeated for ``seconds``."""
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        await anyio.sleep(TICK)
        out.append(max(0.0, time.perf_counter() - start - TICK) * 1000)
    return out


async def submit_all(submit: Callable[[Track], Awaitable[None]], tracks: list[Track]) -> None:
    """``submit`` every track, ``IN_FLIGHT`` at a time (a fixed set of tasks on both sides:
    a task per track would leave the event loop's task sets grown to the job count)."""
    it: Iterator[Track] = iter(tracks)

    async def worker() -> None:
        for track in it:
            await submit(track)

    async with anyio.create_task_group() as tg:
        for _ in range(IN_FLIGHT):
            tg.start_soon(worker)


class _Probe:
    """The baseline and the second look, by RSS or by tracemalloc; the lag with RSS."""

    def __init__(self, how: str, seconds: float) -> None:
        self.how = how
        self.seconds = seconds if how == "rss" else 0.0

    def _now(self) -> int:
        gc.collect()
        if self.how == "traced":
            return tracemalloc.get_traced_memory()[0]
        return proc_status_kb("VmRSS") * 1024

    def start(self) -> None:
        if self.how == "traced":
            tracemalloc.start(1)
        self.before = self._now()

    def growth(self) -> int:
        return self._now() - self.before


async def _sdk(base_url: str, api_key: str, tracks: list[Track], probe: _Probe) -> dict[str, Any]:
    poll = PollPolicy(initial_delay=3000, max_interval=3000, max_wait=3600)
    async with Client(api_key, base_url=base_url, poll=poll) as client:
        jobs = [await client.create_video(*tracks[0])]

        async def submit(track: Track) -> None:
            jobs.append(await client.create_video(*track))

        return await _measure(probe, submit, tracks[1:], lambda: sum(not j.done() for j in jobs))


async def _raw(base_url: str, api_key: str, tracks: list[Track], probe: _Probe) -> dict[str, Any]:
    pending: dict[str, tuple[Track, float]] = {}
    due: list[tuple[float, str]] = []
    url = f"{base_url}/api/v1/mp4/generate"
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def submit(track: Track) -> None:
            body = {"taskId": track[0], "audioId": track[1], "callBackUrl": NO_CALLBACK_URL}
            async with session.post(url, json=body) as resp:
                data = await resp.json()
            if data.get("code") != 200:
                raise RuntimeError(f"submit refused: {data}")
            task_id = data["data"]["taskId"]
            now = time.monotonic()
            pending[task_id] = (track, now + 3600)
            heapq.heappush(due, (now + 3000, task_id))

        await submit(tracks[0])
        return await _measure(probe, submit, tracks[1:], lambda: len(pending))


async def _measure(
    probe: _Probe,
    submit: Callable[[Track], Awaitable[None]],
    tracks: list[Track],
    pending: Callable[[], int],
) -> dict[str, Any]:
    probe.start()
    empty_lag = await lag_ms(probe.seconds)
    await submit_all(submit, tracks)
    growth = probe.growth()
    full_lag = await lag_ms(probe.seconds)
    return {
        "bytes_per_job": growth / len(tracks),
        "pending": pending() - 1,
        "empty_p99": pct(empty_lag, 99),
        "full_p99": pct(full_lag, 99),
        "full_p50": median(full_lag),
    }


def worker(
    mode: str, how: str, base_url: str, api_key: str, tracks_file: Path, seconds: float
) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    tracks = [(t, a) for t, a in json.loads(tracks_file.read_text())]
    side = _sdk if mode == "sdk" else _raw
    return anyio.run(side, base_url, api_key, tracks, _Probe(how, seconds))


# The driver.


def _spawn(mode: str, how: str, sb: Any, tracks_file: Path, seconds: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scale", "--worker", mode, "--how", how]
    cmd += ["--base-url", sb.base_url, "--api-key", sb.api_key, "--tracks-file", str(tracks_file)]
    cmd += ["--seconds", str(seconds)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scale worker {mode}/{how} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def measure(
    jobs: int, runs: int = 3, seconds: float = 3.0
) -> dict[str, dict[str, list[Any]]]:
    """Every run's figures, by side and then by measure."""
    results: dict[str, dict[str, list[Any]]] = {m: {"rss": [], "traced": []} for m in MODES}
    with (
        sandbox_process("--render-time", "3600", "--no-render", "--credits", "1000000000") as sb,
        tempfile.TemporaryDirectory(prefix="suno-mp4-scale-") as work,
    ):
        tracks_file = Path(work) / "tracks.json"
        # Every side submits the same tracks (the sandbox takes a track more than once).
        tracks_file.write_text(json.dumps(await sb.add_tracks(jobs + 1)))
        for i in range(runs):
            order = list(MODES) if i % 2 == 0 else list(reversed(MODES))
            for how in ("rss", "traced"):
                for mode in order:
                    r = await anyio.to_thread.run_sync(_spawn, mode, how, sb, tracks_file, seconds)
                    if r["pending"] != jobs:
                        raise RuntimeError(f"{mode}: {r['pending']} of {jobs} jobs pending")
                    results[mode][how].append(r)
    return results


async def run(jobs: int, runs: int = 3, seconds: float = 3.0) -> tuple[list[str], list[list[Any]]]:
    results = await measure(jobs, runs, seconds)
    headers = [
        f"{jobs:,} pending jobs",
        "RSS KB/job",
        "live KB/job (tracemalloc)",
        "vs raw (RSS)",
        "loop lag p99, none pending (ms)",
        "loop lag p99, all pending (ms)",
    ]

    def kb(mode: str, how: str) -> list[float]:
        return [r["bytes_per_job"] / 1024 for r in results[mode][how]]

    raw_rss = kb("raw", "rss")
    rows: list[list[Any]] = []
    for mode, label in MODES.items():
        rss = kb(mode, "rss")
        ratio = [ours / base for ours, base in zip(rss, raw_rss, strict=True)]
        rows.append(
            [
                label,
                spread(rss),
                spread(kb(mode, "traced")),
                spread(ratio) if mode != "raw" else "1",
                spread([r["empty_p99"] for r in results[mode]["rss"]]),
                spread([r["full_p99"] for r in results[mode]["rss"]]),
            ]
        )
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--how", choices=["rss", "traced"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--tracks-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        out = worker(
            args.worker, args.how, args.base_url, args.api_key, args.tracks_file, args.seconds
        )
        print(json.dumps(out))
        return
    headers, rows = anyio.run(run, args.jobs, args.runs, args.seconds)
    print(f"median [min-max] of {args.runs} alternating runs, each side in fresh processes")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
