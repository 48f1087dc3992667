"""The README's crash-safe batch recipe, for the crash test: every track through
``create_videos`` with a SQLite store. Killed with SIGKILL at random moments, then run again.

    python tests/_batch_worker.py BASE_URL API_KEY TRACKS.json STORE.db
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from suno_mp4 import Client, PollPolicy, SQLiteJobStore, VideoRequest


async def main(base_url: str, api_key: str, tracks_file: str, db: str) -> None:
    tracks = json.loads(Path(tracks_file).read_text())
    store = SQLiteJobStore(db)
    poll = PollPolicy(initial_delay=0.1, max_interval=0.5, max_wait=120)
    try:
        async with Client(api_key, base_url=base_url, store=store, poll=poll) as client:
            requests = (VideoRequest(*track) for track in tracks)
            async for result in client.create_videos(requests, max_in_flight=40):
                outcome = "ok" if result.ok else type(result.error).__name__
                print(f"result {outcome}", flush=True)
        print("finished", flush=True)
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])
