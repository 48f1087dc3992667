"""Admin routes under ``/sandbox/``: the test controls of ``Sandbox`` over HTTP, for a
sandbox running in another process (``python -m suno_mp4.sandbox``, the benchmarks).

No authentication: the sandbox listens on loopback and holds nothing of value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ._server import Sandbox

__all__ = ["admin_routes"]

AdminHandler = Callable[[web.Request], Awaitable[object]]


def admin_routes(sandbox: Sandbox) -> list[web.RouteDef]:
    async def add_track(request: web.Request) -> object:
        body = await _body(request)
        task_id, audio_id = sandbox.add_track(
            body.get("path"),
            title=body.get("title"),
            duration=body.get("duration"),
            fail=body.get("fail"),
        )
        return {"task_id": task_id, "audio_id": audio_id}

    async def add_music_task(request: web.Request) -> object:
        body = await _body(request)
        task_id, audio_ids = sandbox.add_music_task(int(body.get("tracks", 2)))
        return {"task_id": task_id, "audio_ids": audio_ids}

    async def stats(request: web.Request) -> object:
        return sandbox.stats.as_json()

    async def reset_stats(request: web.Request) -> object:
        sandbox.stats.reset()
        return sandbox.stats.as_json()

    async def advance(request: web.Request) -> object:
        body = await _body(request)
        sandbox.advance(
            days=float(body.get("days", 0)),
            hours=float(body.get("hours", 0)),
            seconds=float(body.get("seconds", 0)),
        )
        return {"now": sandbox.now()}

    async def faults(request: web.Request) -> object:
        if request.method == "POST":
            sandbox.faults.update(await _body(request))
        return sandbox.faults.as_dict()

    async def maintenance(request: web.Request) -> object:
        body = await _body(request)
        sandbox.maintenance = bool(body.get("on", True))
        return {"maintenance": sandbox.maintenance}

    async def credits(request: web.Request) -> object:
        if request.method == "POST":
            sandbox.credits = int((await _body(request))["credits"])
        return {"credits": sandbox.credits}

    async def task(request: web.Request) -> object:
        task_id = request.match_info["task_id"]
        if task_id not in sandbox.tasks:
            raise web.HTTPNotFound(text=f"no video task {task_id!r}")
        return sandbox.task(task_id).as_json()

    return [
        web.post("/sandbox/tracks", _json(add_track)),
        web.post("/sandbox/music-tasks", _json(add_music_task)),
        web.get("/sandbox/stats", _json(stats)),
        web.post("/sandbox/stats/reset", _json(reset_stats)),
        web.post("/sandbox/advance", _json(advance)),
        web.get("/sandbox/faults", _json(faults)),
        web.post("/sandbox/faults", _json(faults)),
        web.post("/sandbox/maintenance", _json(maintenance)),
        web.get("/sandbox/credits", _json(credits)),
        web.post("/sandbox/credits", _json(credits)),
        web.get("/sandbox/tasks/{task_id}", _json(task)),
    ]


def _json(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Answer the handler's result as JSON; a bad admin request answers 400 with why."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return web.json_response(await handler(request))
        except (ValueError, TypeError, KeyError, OSError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)

    return wrapped


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body
