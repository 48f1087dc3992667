"""Scale-out on Redis: worker processes share one rate limit, one callback URL and one store.

Each worker is its own process with a ``Client`` using ``RedisRateLimit``,
``RedisCallbackRelay`` and ``RedisJobStore``; they take tracks from one Redis list (a work
queue) and submit them with ``key=`` (the track's id). Every worker hands out the same
callback URL, served by worker 0 only (a load balancer that always picks worker 0), so the
other workers' jobs resolve only through the relay. With ``--kill K`` worker K is SIGKILLed
once half the jobs were submitted: the others claim its jobs (the store's leases) and put
back the tracks it had taken but not submitted; ``key=`` makes sure nothing is submitted
twice.

    python -m benchmarks.scaleout --workers 4 --jobs 2000 --rate 20 --kill 2   # acceptance
    python -m benchmarks.scaleout --bench --jobs 400          # 1, 2, 4 workers, then a kill

Throughput = submits per second after the first burst, (n - limit) / (last submit - first
submit), over the limit (as in ``benchmarks.ratelimit``). Lag = when the submitting worker
resolved the job - when the sandbox finished it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
import anyio
from redis.asyncio import Redis
from suno_mp4_sandbox import redis_server

from suno_mp4 import (
    CallbackListener,
    Client,
    InvalidRequestError,
    PollPolicy,
    RateLimit,
    SunoMp4Error,
    VideoJob,
)
from suno_mp4.redis import RedisCallbackRelay, RedisJobStore, RedisRateLimit

from ._common import SandboxProcess, median, pct, sandbox_process, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE = "{bench}:queue"
RESULTS = "{bench}:results"


def _processing(worker: str) -> str:
    return f"{{bench}}:processing:{worker}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The worker process.


async def worker(cfg: dict[str, Any]) -> None:
    me = f"w{cfg['index']}"
    others = [f"w{i}" for i in range(cfg["workers"]) if i != cfg["index"]]
    redis = Redis.from_url(cfg["redis"])
    store = RedisJobStore(redis, worker_id=me, lease=cfg["lease"])
    listener = CallbackListener(
        port=cfg["front_port"] if cfg["index"] == 0 else 0,
        public_url=cfg["front_url"],
        secret=cfg["secret"],
    )
    slots = anyio.Semaphore(cfg["max_in_flight"])

    async def record(key: str, outcome: dict[str, Any]) -> None:
        await redis.hsetnx(RESULTS, key, json.dumps({"worker": me, **outcome}))

    async def finish(job: VideoJob, key: str | None, claimed: bool) -> None:
        try:
            if key is None:  # a claimed job: its record names the track
                found = await store.find_task(job.task_id)
                key = found.key if found is not None else job.task_id
            try:
                await job
                ok = True
            except SunoMp4Error:
                ok = False
            await record(
                key,
                {
                    "task_id": job.task_id,
                    "ok": ok,
                    "by": job.resolved_by,
                    "t": time.time(),
                    "claimed": claimed,
                },
            )
        finally:
            if not claimed:
                slots.release()

    async def requeue_dead() -> int:
        """Tracks a dead worker took but never submitted go back to the queue (a track it
        did submit is found in the store by its key: submit(key=) re-attaches, no re-send)."""
        moved = 0
        for other in others:
            if not await store.alive(other):
                while await redis.lmove(_processing(other), QUEUE, "RIGHT", "LEFT"):
                    moved += 1
        return moved

    async with anyio.create_task_group() as tg:

        def on_claim(job: VideoJob) -> None:
            tg.start_soon(finish, job, None, True)

        async with Client(
            cfg["api_key"],
            base_url=cfg["base_url"],
            rate_limit=RedisRateLimit(redis, RateLimit(cfg["rate"], 1.0)),
            relay=RedisCallbackRelay(redis),
            store=store,
            callbacks=listener,
            on_claim=on_claim,
            poll=PollPolicy(fallback_interval=30, max_wait=600),
        ) as client:
            while True:
                await slots.acquire()
                raw = await redis.lmove(QUEUE, _processing(me), "LEFT", "RIGHT")
                if raw is None:
                    slots.release()
                    if await requeue_dead():
                        continue
                    break
                item = json.loads(raw)
                try:
                    job = await client.create_video(
                        item["task_id"], item["audio_id"], key=item["key"]
                    )
                except InvalidRequestError as exc:  # submitted by a worker that died: unknown
                    await record(item["key"], {"ok": False, "unknown": str(exc), "t": time.time()})
                    slots.release()
                    await redis.lrem(_processing(me), 1, raw)
                    continue
                await redis.lrem(_processing(me), 1, raw)
                tg.start_soon(finish, job, item["key"], False)
            # Stay (claiming, serving callbacks for the others) until every track has a result.
            while await redis.hlen(RESULTS) < cfg["jobs"]:
                await requeue_dead()
                await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
    await redis.aclose()


# The parent: redis-server, sandbox, workers, measurements.


async def _task_times(sb: SandboxProcess, task_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Video task id -> (created, completed) on the sandbox's clock."""
    out: dict[str, tuple[float, float]] = {}
    async with aiohttp.ClientSession(headers=sb.admin_headers) as session:
        for tid in task_ids:
            async with session.get(f"{sb.base_url}/sandbox/tasks/{tid}") as resp:
                data = await resp.json()
                if data.get("completed_at") is not None:
                    out[tid] = (float(data["created_at"]), float(data["completed_at"]))
    return out


async def run(
    workers: int,
    jobs: int,
    rate: int,
    *,
    kill: int | None = None,
    lease: float = 3.0,
    render_time: str = "1,4",
    max_in_flight: int = 200,
    timeout: float = 900.0,
) -> dict[str, Any]:
    with (
        redis_server() as server,
        sandbox_process(
            "--rate-limit", f"{rate}/1", "--render-time", render_time, "--no-render"
        ) as sb,
    ):
        redis = Redis.from_url(server.url)
        tracks = await sb.add_tracks(jobs)
        await redis.rpush(
            QUEUE,
            *[
                json.dumps({"key": f"track-{i}", "task_id": t, "audio_id": a})
                for i, (t, a) in enumerate(tracks)
            ],
        )
        front_port = _free_port()
        cfg = {
            "redis": server.url,
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "workers": workers,
            "jobs": jobs,
            "rate": rate,
            "lease": lease,
            "max_in_flight": max_in_flight,
            "secret": secrets.token_urlsafe(32),
            "front_port": front_port,
            "front_url": f"http://127.0.0.1:{front_port}",
        }
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        procs = [
            subprocess.Popen(  # noqa: ASYNC220 - starting a process does not block
                [
                    sys.executable,
                    "-m",
                    "benchmarks.scaleout",
                    "--worker",
                    json.dumps({**cfg, "index": i}),
                ],
                env=env,
                cwd=ROOT,
            )
            for i in range(workers)
        ]
        killed_at = None
        try:
            with anyio.fail_after(timeout):
                while any(p.poll() is None for p in procs):
                    if kill is not None and killed_at is None:
                        accepted = (await sb.stats())["submits_accepted"]
                        if accepted >= jobs // 2:
                            procs[kill].send_signal(signal.SIGKILL)
                            killed_at = accepted
                    await anyio.sleep(0.1)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        stats = await sb.stats()
        results = {k.decode(): json.loads(v) for k, v in (await redis.hgetall(RESULTS)).items()}
        await redis.aclose()
        done = {k: r for k, r in results.items() if r.get("task_id")}
        task_times = await _task_times(sb, [r["task_id"] for r in done.values()])
    submits = stats["submits"]  # "task|audio" -> count
    counts = list(submits.values()) if isinstance(submits, dict) else []
    times = sorted(r["t"] for r in done.values())
    own = [r for r in done.values() if not r["claimed"]]
    lags = [
        max(0.0, r["t"] - task_times[r["task_id"]][1]) for r in own if r["task_id"] in task_times
    ]
    claimed_lags = [
        max(0.0, r["t"] - task_times[r["task_id"]][1])
        for r in done.values()
        if r["claimed"] and r["task_id"] in task_times
    ]
    created = sorted(c for c, _ in task_times.values())
    window = created[-1] - created[0] if len(created) > 1 else 0.0
    return {
        "workers": workers,
        "jobs": jobs,
        "rate": rate,
        "killed": f"w{kill} after {killed_at} submits" if killed_at is not None else "-",
        "results": len(results),
        "ok": sum(1 for r in done.values() if r["ok"]),
        "unknown": sum(1 for r in results.values() if "unknown" in r),
        "claimed": sum(1 for r in done.values() if r["claimed"]),
        "by_callback": sum(1 for r in own if r["by"] == "callback"),
        "by_poll": sum(1 for r in own if r["by"] == "poll"),
        "submits": sum(counts),
        "resubmitted": sum(c - 1 for c in counts if c > 1),
        "answers_429": int(stats["answers"].get("429", 0)),
        "polls": sum(stats["polls"].values()),
        # The first `rate` submits go at once; the rest pace at the limit.
        "throughput": (len(created) - rate) / window / rate if window else float("nan"),
        "lag_p50_ms": median(lags) * 1000,
        "lag_p99_ms": pct(lags, 99) * 1000,
        "claimed_lag_max_s": max(claimed_lags, default=0.0),
        "wall_s": (times[-1] - times[0]) if times else 0.0,
    }


def _row(r: dict[str, Any]) -> list[object]:
    return [
        r["workers"],
        r["jobs"],
        r["killed"],
        f"{r['ok']}/{r['jobs']}",
        r["unknown"],
        r["claimed"],
        f"{r['by_callback']}/{r['by_poll']}",
        r["resubmitted"],
        r["answers_429"],
        r["throughput"],
        r["lag_p50_ms"],
        r["lag_p99_ms"],
        r["claimed_lag_max_s"] if r["claimed"] else "-",
    ]


HEADERS = [
    "workers",
    "jobs",
    "killed",
    "resolved ok",
    "unknown",
    "claimed",
    "own jobs by callback/poll",
    "re-submitted",
    "429s",
    "throughput / limit",
    "lag p50 (ms)",
    "lag p99 (ms)",
    "claimed jobs' lag max (s)",
]


async def bench(jobs: int, rate: int, *, kill_jobs: int) -> tuple[list[str], list[list[object]]]:
    """The benchmark rows: 1, 2 and 4 workers (the 1-worker row is the baseline), then 4
    workers with one SIGKILLed midway."""
    results = [await run(n, jobs, rate) for n in (1, 2, 4)]
    if kill_jobs:
        results.append(await run(4, kill_jobs, rate, kill=2))
    base = results[0]["throughput"]
    rows = [[*_row(r), r["throughput"] / base] for r in results]
    return [*HEADERS, "throughput vs 1 worker"], rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=20, help="the API's limit, requests/s")
    parser.add_argument("--kill", type=int, default=None, help="SIGKILL this worker midway")
    parser.add_argument("--bench", action="store_true", help="1, 2 and 4 workers, no kill")
    args = parser.parse_args(argv)
    if args.worker:
        anyio.run(worker, json.loads(args.worker))
        return
    if args.bench:
        headers, rows = anyio.run(lambda: bench(args.jobs, args.rate, kill_jobs=args.jobs))
        print(table(headers, rows))
        return
    result = anyio.run(lambda: run(args.workers, args.jobs, args.rate, kill=args.kill))
    print(json.dumps(result, indent=2))
    print(table(HEADERS, [_row(result)]))


if __name__ == "__main__":
    main()
