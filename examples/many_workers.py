"""Many workers, one account: a shared rate limit, one callback URL, one job store (Redis).

``worker()`` is what each process (or machine) runs. Here two workers run side by side
against the sandbox and a throwaway redis-server, and the "load balancer" sends every
callback to worker a: worker b's jobs still resolve by callback, through the relay.
"""

import secrets
import socket

import anyio
from redis.asyncio import Redis

from suno_mp4 import CallbackListener, Client, RateLimit, VideoJob
from suno_mp4.redis import RedisCallbackRelay, RedisJobStore, RedisRateLimit
from suno_mp4.sandbox import Sandbox, redis_server


async def worker(
    redis: Redis,
    tracks: dict[str, tuple[str, str]],  # your track id -> (music task id, audio id)
    *,
    worker_id: str,
    listener: CallbackListener,
    api_key: str | None = None,
    base_url: str | None = None,
    finished: anyio.Event | None = None,
    serve_until: anyio.Event | None = None,
) -> dict[str, str]:
    """Make a video for each track; returns track id -> video URL.

    A worker's listener serves the callbacks of every worker: a worker that is done with
    its own tracks sets ``finished`` and keeps serving until ``serve_until`` (a long-running
    service simply keeps running).
    """
    urls: dict[str, str] = {}

    def on_claim(job: VideoJob) -> None:
        # A job of a worker that died: we finish it; its record lands in the store.
        print(f"{worker_id} took over {job.task_id}")

    async with Client(
        api_key,
        base_url=base_url,
        rate_limit=RedisRateLimit(redis, RateLimit(20, 1.0)),  # the account's limit, for all
        relay=RedisCallbackRelay(redis),  # a callback reaches the worker awaiting it
        store=RedisJobStore(redis, worker_id=worker_id),  # leases: dead workers' jobs go on
        callbacks=listener,
        on_claim=on_claim,
    ) as client:

        async def one(track_id: str, task_id: str, audio_id: str) -> None:
            # key=: run this again after a crash and nothing is submitted twice.
            job = await client.create_video(task_id, audio_id, key=track_id)
            video = await job
            urls[track_id] = f"{video.video_url} ({job.resolved_by})"

        async with anyio.create_task_group() as tg:
            for track_id, (task_id, audio_id) in tracks.items():
                tg.start_soon(one, track_id, task_id, audio_id)
        if finished is not None:
            finished.set()
        if serve_until is not None:
            await serve_until.wait()
    return urls


async def main() -> None:
    secret = secrets.token_urlsafe(32)  # the same on every worker (an environment variable)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    public_url = f"http://127.0.0.1:{port}"  # the load balancer's address, in real life
    with redis_server() as server:
        redis = Redis.from_url(server.url)
        async with Sandbox(render_time=(0.5, 1.5)) as sb:
            tracks = {f"track-{i}": sb.add_track() for i in range(12)}
            # Worker a serves the callback URL; worker b hands out the same URL, and the
            # balancer never sends it anything.
            listeners = {
                "a": CallbackListener(port=port, public_url=public_url, secret=secret),
                "b": CallbackListener(public_url=public_url, secret=secret),
            }
            shares = {
                "a": dict(list(tracks.items())[:6]),
                "b": dict(list(tracks.items())[6:]),
            }
            results: dict[str, dict[str, str]] = {}
            finished = {name: anyio.Event() for name in shares}
            all_finished = anyio.Event()

            async def run(name: str) -> None:
                results[name] = await worker(
                    redis,
                    shares[name],
                    worker_id=name,
                    listener=listeners[name],
                    api_key=sb.api_key,
                    base_url=sb.base_url,
                    finished=finished[name],
                    serve_until=all_finished,
                )

            async def watch() -> None:
                for event in finished.values():
                    await event.wait()
                all_finished.set()

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch)
                    tg.start_soon(run, "a")
                    tg.start_soon(run, "b")
        await redis.aclose()
    for name, urls in results.items():
        for track_id, url in urls.items():
            print(f"worker {name}: {track_id} -> {url}")
    by_callback = sum("(callback)" in u for urls in results.values() for u in urls.values())
    print(
        f"{sum(map(len, results.values()))} videos by {len(results)} workers, "
        f"{by_callback} resolved by callback; worker a's listener answered "
        f"{listeners['a'].answers}, worker b's {listeners['b'].answers}"
    )


if __name__ == "__main__":
    anyio.run(main)
