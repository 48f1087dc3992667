"""The README quickstart: make one music video against the local sandbox."""

import anyio

from suno_mp4 import Client
from suno_mp4.sandbox import Sandbox


async def main() -> None:
    async with Sandbox() as sb:  # or skip this and use the real API
        task_id, audio_id = sb.add_track()  # a music task with one track
        async with Client(sb.api_key, base_url=sb.base_url) as client:
            job = await client.create_video(
                task_id, audio_id, author="DJ Electronic", domain_name="music.example.com"
            )
            video = await job  # a MusicVideo
            print(video.video_url, "valid until", video.expires_at)


if __name__ == "__main__":
    anyio.run(main)
