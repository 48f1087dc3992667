"""Callbacks into a FastAPI (Starlette) app under uvicorn: your own route hands each
callback request to the SDK, which verifies it exactly as its own listener does.

The sandbox plays the API and signs its callbacks (X-Webhook-Signature). The job resolves
by callback (polling is set to an hour, so nothing else could resolve it); then a forged,
an unsigned and a stale callback are sent, and refused.
"""

import socket

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response
from forged_callbacks import refusals

from suno_mp4 import CallbackListener, Client, PollPolicy
from suno_mp4.sandbox import Sandbox

SIGNING_KEY = "the-key-from-your-provider-dashboard"

listener = CallbackListener(hmac_key=SIGNING_KEY)
app = FastAPI()


@app.post(listener.route)  # "/suno-mp4/callbacks/{secret}"
async def suno_callback(secret: str, request: Request) -> Response:
    body = b""
    async for chunk in request.stream():  # at most max_body + 1 bytes are kept
        body += chunk
        if len(body) > listener.max_body:
            break
    answer = await listener.receive(request.url.path, request.headers, body)
    return Response(answer.body, status_code=answer.status, media_type="application/json")


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    listener.use_own_route(f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    poll = PollPolicy(initial_delay=3600, fallback_interval=3600)  # only a callback resolves
    async with Sandbox(hmac_key=SIGNING_KEY) as sb, anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        async with Client(sb.api_key, base_url=sb.base_url, callbacks=listener, poll=poll) as c:
            job = await c.create_video(*sb.add_track(), author="FastAPI")
            with anyio.fail_after(60):
                video = await job
            print(f"resolved by {job.resolved_by}: {video.video_url}")
            forged, unsigned, stale = await refusals(
                listener.callback_url, job.task_id, SIGNING_KEY
            )
            print(f"forged {forged}, unsigned {unsigned}, stale {stale}")
        server.should_exit = True


if __name__ == "__main__":
    anyio.run(main)
