"""Convert many tracks at once, with a rate limit, printing results as they finish."""

import anyio

from suno_mp4 import CallbackListener, Client, RateLimit, VideoRequest
from suno_mp4.sandbox import Sandbox


async def main(count: int = 50) -> None:
    async with Sandbox(render_time=(0.2, 1.0), rate_limit=(20, 1.0)) as sb:
        requests = [VideoRequest(*sb.add_track(), author="Label") for _ in range(count)]
        async with Client(
            sb.api_key,
            base_url=sb.base_url,
            callbacks=CallbackListener(),  # results arrive by callback; polls are a safety net
            rate_limit=RateLimit(20, 1.0),  # the account's limit: never exceeded
        ) as client:
            done = failed = 0
            async for result in client.create_videos(requests, max_in_flight=25):
                if result.video is not None:
                    done += 1
                else:
                    failed += 1
                    print("failed:", result.request.audio_id, result.error)
            print(f"{done} videos, {failed} failures")


if __name__ == "__main__":
    anyio.run(main)
