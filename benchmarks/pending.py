"""How far behind their due time polls fall with many jobs pending: the client's one poller
(scheduler + workers, the default learned schedule) serving 10,000 and 100,000 jobs, with a
server that answers instantly (an in-process fetch: no network, so what is measured is the
SDK's own capacity, not a server's).

    python -m benchmarks.pending [--jobs 100000] [--runs 3] [--over 10]

The jobs are submitted evenly over ``--over`` seconds, each rendering uniform 1-20 s; a
poll is late by (when a worker sent it - when it was due). Reported: polls per second the
poller sustained, lateness p50 / p99 / max, and the client CPU per poll. Median [min-max]
over the runs, each in a fresh poller.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import anyio

from suno_mp4 import PollPolicy
from suno_mp4._clock import loop_time
from suno_mp4._jobs import JobRegistry, VideoJob
from suno_mp4._models import TaskStatus, VideoDetails
from suno_mp4._poller import Poller

from ._common import spread, table


class _TimedPoller(Poller):
    """The poller, noting how late each poll reaches a worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.late: list[float] = []
        self._due: dict[str, float] = {}

    def _push(self, due: float, job: VideoJob) -> None:
        self._due[job.task_id] = due  # its next poll (or its deadline, if that comes first)
        super()._push(due, job)

    async def poll(self, job: VideoJob) -> None:
        due = self._due.pop(job.task_id, None)
        if due is not None:
            self.late.append(loop_time() - due)
        await super().poll(job)


async def _one(jobs: int, over: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    renders: dict[str, float] = {}
    born: dict[str, float] = {}

    async def fetch(task_id: str) -> VideoDetails:
        await anyio.lowlevel.checkpoint()
        done = loop_time() - born[task_id] >= renders[task_id]
        status = TaskStatus.SUCCESS if done else TaskStatus.PENDING
        url = f"https://cdn.example/{task_id}.mp4" if done else None
        return VideoDetails(task_id=task_id, status=status, video_url=url)

    poller = _TimedPoller(fetch, PollPolicy(max_wait=None))
    registry = JobRegistry(poller)
    resolved = anyio.Event()
    left = jobs
    cpu = time.process_time()
    started = loop_time()
    async with anyio.create_task_group() as tg:
        await tg.start(poller.run, registry)
        for i in range(jobs):
            if i % 100 == 0:
                await anyio.sleep(max(0.0, started + over * i / jobs - loop_time()))
            task_id = f"task-{seed}-{i}"
            renders[task_id] = rng.uniform(1, 20)
            born[task_id] = loop_time()
            job = registry.register(VideoJob(task_id, None, registry=registry, max_wait=None))

            def finished(_: VideoJob) -> None:
                nonlocal left
                left -= 1
                if left == 0:
                    resolved.set()

            job.add_done_callback(finished)
        await resolved.wait()
        tg.cancel_scope.cancel()
    cpu = time.process_time() - cpu
    wall = loop_time() - started
    late = sorted(poller.late)
    return {
        "rate": poller.polls / wall,
        "p50": late[len(late) // 2] * 1000,
        "p99": late[int(len(late) * 0.99)] * 1000,
        "max": late[-1] * 1000,
        "cpu": cpu / max(1, poller.polls) * 1e6,
        "polls": poller.polls / jobs,
    }


def run(sizes: list[int], runs: int, over: float) -> tuple[list[str], list[list[Any]]]:
    rows: list[list[Any]] = []
    for jobs in sizes:
        results = [anyio.run(_one, jobs, over, seed) for seed in range(runs)]
        rows.append(
            [f"{jobs:,}"]
            + [spread(r[k] for r in results) for k in ("polls", "rate", "p50", "p99", "max", "cpu")]
        )
    headers = ["pending jobs", "polls/job", "polls/s", "late p50 (ms)", "late p99 (ms)"]
    return [*headers, "late max (ms)", "CPU/poll (µs)"], rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--over", type=float, default=10.0, help="seconds the submits span")
    args = parser.parse_args(argv)
    headers, rows = run(args.jobs, args.runs, args.over)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
