"""A batch run with the SQLite store, for the crash test: resume what the store knows,
submit the rest, await everything. Killed with SIGKILL at random moments by the test.

    python tests/_crash_worker.py BASE_URL API_KEY TRACKS.json STORE.db
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from suno_mp4 import Client, PollPolicy, SQLiteJobStore, VideoRequest


async def main(base_url: str, api_key: str, tracks_file: str, db: str) -> None:
    tracks = [tuple(t) for t in json.loads(Path(tracks_file).read_text())]
    store = SQLiteJobStore(db)
    poll = PollPolicy(initial_delay=0.2, max_interval=0.5, max_wait=120)
    try:
        async with Client(api_key, base_url=base_url, store=store, poll=poll) as client:
            jobs = [job async for job in client.resume()]
            known = {(r.request.task_id, r.request.audio_id) for r in await store.all()}
            print(f"resumed {len(jobs)}", flush=True)
            async with anyio.create_task_group() as tg:

                async def one(track: tuple[str, str]) -> None:
                    job = await client.submit(VideoRequest(*track))
                    print(f"submitted {job.task_id}", flush=True)
                    await job

                async def wait(job: object) -> None:
                    await job  # type: ignore[misc]

                for job in jobs:
                    tg.start_soon(wait, job)
                for track in tracks:
                    if track not in known:
                        tg.start_soon(one, track)
            print("finished", flush=True)
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])
