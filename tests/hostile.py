"""A hostile API server for tests: a real aiohttp server on 127.0.0.1 whose answers each
test scripts (the sandbox only gives well-formed ones)."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

Reply = web.StreamResponse | dict[str, Any] | bytes
Answer = Callable[[web.Request], Reply | Awaitable[Reply]]

KEY = "hostile-test-key-0123456789abcdef"


def envelope(data: object, code: int = 200, msg: str = "success") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def pending(task_id: str) -> dict[str, Any]:
    return envelope({"taskId": task_id, "successFlag": "PENDING"})


def success(task_id: str, url: str, **fields: object) -> dict[str, Any]:
    data = {"taskId": task_id, "successFlag": "SUCCESS", "response": {"videoUrl": url}}
    data.update(fields)
    return envelope(data)


class Hostile:
    """Scripted answers: ``submit`` answers every generate call, ``details[task_id]`` the
    record-info call for that task (default: PENDING); every ``/v/...`` URL serves
    ``video``."""

    def __init__(self) -> None:
        self.base_url = ""
        self.api_key = KEY
        self._ids = itertools.count(1)
        self.submit: Answer = lambda _req: envelope({"taskId": f"video-{next(self._ids)}"})
        self.details: dict[str, Answer] = {}
        self.video = b"\x00\x00\x00\x18ftypmp42" + bytes(1000)
        self.submits = 0
        self.polls = 0

    def video_url(self, raw_name: str) -> str:
        return f"{self.base_url}/v/{raw_name}"

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        self.submits += 1
        return await _respond(self.submit(request))

    async def _record_info(self, request: web.Request) -> web.StreamResponse:
        self.polls += 1
        task_id = request.query.get("taskId", "")
        answer = self.details.get(task_id)
        return await _respond(answer(request) if answer else pending(task_id))

    async def _file(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.video, content_type="video/mp4")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/mp4/generate", self._generate)
        app.router.add_get("/api/v1/mp4/record-info", self._record_info)
        app.router.add_get("/v/{name:.+}", self._file)
        return app


async def _respond(answer: Reply | Awaitable[Reply]) -> web.StreamResponse:
    if inspect.isawaitable(answer):
        answer = await answer
    if isinstance(answer, web.StreamResponse):
        return answer
    if isinstance(answer, bytes):
        return web.Response(body=answer, content_type="application/json")
    return web.Response(text=json.dumps(answer), content_type="application/json")


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on 127.0.0.1 (a free port) while in the block; gives its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def hostile_server() -> AsyncIterator[Hostile]:
    server = Hostile()
    async with serve_app(server.app()) as base_url:
        server.base_url = base_url
        yield server
