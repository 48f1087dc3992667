"""The idiomatic aiohttp bot: ``web.run_app`` with the SDK's client in a ``cleanup_ctx``,
the callback route mounted on the bot's own app (no second port).

The sandbox plays the API and signs its callbacks. The bot's "user" asks for one video at
start-up; it resolves by callback (polling is set to an hour); forged, unsigned and stale
callbacks are refused; then the bot shuts down as on Ctrl-C.
"""

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import anyio
from aiohttp import web
from forged_callbacks import refusals

from suno_mp4 import CallbackListener, Client, PollPolicy
from suno_mp4.sandbox import Sandbox

SIGNING_KEY = "the-key-from-your-provider-dashboard"
CLIENT = web.AppKey("suno_client", Client)
SANDBOX = web.AppKey("sandbox", Sandbox)
LISTENER = web.AppKey("listener", CallbackListener)
USER = web.AppKey("user", asyncio.Task)


async def suno_client(app: web.Application) -> AsyncIterator[None]:
    """One client for the bot's lifetime (with the sandbox playing the API here)."""
    poll = PollPolicy(initial_delay=3600, fallback_interval=3600)  # only a callback resolves
    async with (
        Sandbox(hmac_key=SIGNING_KEY) as sb,
        Client(sb.api_key, base_url=sb.base_url, callbacks=app[LISTENER], poll=poll) as client,
    ):
        app[CLIENT], app[SANDBOX] = client, sb
        yield


async def a_user_asks_for_a_video(app: web.Application) -> None:
    client, sb = app[CLIENT], app[SANDBOX]
    job = await client.create_video(*sb.add_track(), author="the bot")
    with anyio.fail_after(60):
        video = await job
    print(f"resolved by {job.resolved_by}: {video.video_url}")
    forged, unsigned, stale = await refusals(app[LISTENER].callback_url, job.task_id, SIGNING_KEY)
    print(f"forged {forged}, unsigned {unsigned}, stale {stale}", flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # the bot's operator presses Ctrl-C


def make_app(public_url: str) -> web.Application:
    app = web.Application()
    app[LISTENER] = CallbackListener(hmac_key=SIGNING_KEY)
    app[LISTENER].attach(app, public_url=public_url)  # before the app starts
    app.cleanup_ctx.append(suno_client)

    async def start_the_user(app: web.Application) -> None:
        app[USER] = asyncio.get_running_loop().create_task(a_user_asks_for_a_video(app))

    app.on_startup.append(start_the_user)
    return app


if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = make_app(f"http://127.0.0.1:{sock.getsockname()[1]}")
    web.run_app(app, sock=sock, print=None)
