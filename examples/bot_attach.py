"""A chat bot that already serves an aiohttp app: mount the callback route on it.

The bot's own webhook server receives the API's callbacks too: no second port. Here the
sandbox plays the API, and the bot's "user" asks for one video.
"""

import socket

import anyio
from aiohttp import web

from suno_mp4 import CallbackListener, Client
from suno_mp4.sandbox import Sandbox


async def main() -> None:
    app = web.Application()  # the bot's existing app (its chat webhooks live here)

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)

    sock = socket.socket()  # bind first, so we know the port before the app starts
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    listener = CallbackListener()
    listener.attach(app, public_url=f"http://127.0.0.1:{port}")  # before the app starts

    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        async with (
            Sandbox() as sb,
            Client(sb.api_key, base_url=sb.base_url, callbacks=listener) as client,
        ):
            job = await client.create_video(*sb.add_track(), author="the bot")
            with anyio.fail_after(60):
                video = await job
            print(f"resolved by {job.resolved_by}: {video.video_url}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    anyio.run(main)
