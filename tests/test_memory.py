"""A pending job stays small: a batch or a bot keeps tens of thousands pending at once.

Live bytes (``tracemalloc``), not time: what a pending job keeps alive in the client's
process — the job, its request and store record, its registry and poller entries — over
jobs submitted to a sandbox in a process of its own. ``python -m benchmarks.scale``
measures the RSS as well; this test keeps regressions out.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from suno_mp4 import Client, PollPolicy, VideoJob

pytestmark = pytest.mark.anyio

#: Jobs pending at once: enough that dicts and heaps are measured at their per-job rate.
JOBS = 2_000
#: Bytes a pending job may keep alive. About 1.14 KB is measured on CPython 3.11 (1.43 KB
#: before the ledger stopped making a partial per job); the bound leaves ~15 % for other
#: Python versions. The target is 2.5 KB of RSS, which adds the allocator's slack to
#: these live bytes.
BOUND = 1_300


@contextmanager
def sandbox_with_tracks(n: int) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    """A sandbox process (renders take an hour) with ``n`` tracks: URL, key, tracks."""
    command = [sys.executable, "-m", "suno_mp4_sandbox", "--port", "0", "--no-render"]
    command += ["--render-time", "3600", "--tracks", str(n)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+) api key (sk-sandbox-[0-9a-f]+)", first)
        assert match, first
        tracks = []
        for line in proc.stdout:
            if found := re.match(r"track: taskId=(\S+) audioId=(\S+)", line):
                tracks.append((found.group(1), found.group(2)))
            elif line.startswith("admin routes"):
                break
        assert len(tracks) == n
        yield match.group(1), match.group(2), tracks
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_pending_job_keeps_less_than_1300_bytes_alive() -> None:
    poll = PollPolicy(initial_delay=3000, max_interval=3000, max_wait=3600)
    with sandbox_with_tracks(JOBS + 1) as (base_url, api_key, tracks):
        async with Client(api_key, base_url=base_url, poll=poll) as client:
            # One job first: every code path warm, the connection pool open.
            jobs: list[VideoJob] = [await client.create_video(*tracks[0])]
            waiting = iter(tracks[1:])

            async def submit() -> None:
                for track in waiting:
                    jobs.append(await client.create_video(*track))

            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tg:
                        for _ in range(32):
                            tg.start_soon(submit)
                gc.collect()
                per_job = (tracemalloc.get_traced_memory()[0] - before) / JOBS
            finally:
                tracemalloc.stop()
            assert sum(not job.done() for job in jobs) == JOBS + 1
    assert per_job < BOUND, f"a pending job keeps {per_job:.0f} bytes alive (bound {BOUND})"
