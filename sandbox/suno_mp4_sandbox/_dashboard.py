"""The dashboard: a page under ``/sandbox/ui`` that shows the sandbox's tasks, their
callbacks and videos, and switches its faults, for a person watching a bot run against it.

The page is three static files (``dashboard/``: HTML, one script, one style sheet) with no
data in them, served to anyone; what they show comes from ``/sandbox/ui/state``, which,
like every admin route, answers only requests carrying the admin token. The URL the sandbox
prints carries the token in its fragment (``#token=...``), which browsers never send; the
script reads it there and sends it as the ``X-Sandbox-Token`` header. The fault toggles
POST to the admin routes of ``_admin`` (faults, credits, maintenance), so the page can do
nothing an admin client cannot.

Live updates are polled: the script fetches the state once a second. Server-sent events
would need the token in the URL (``EventSource`` sets no headers), where access logs and
browser history keep it; a fetch-streamed event stream would avoid that but hold one
connection per open tab for as long as the tab lives, and needs reconnect logic that a poll
gets for free. A state of at most :data:`MAX_TASKS_SHOWN` tasks a second costs little on
loopback.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from importlib import resources
from typing import Protocol

from aiohttp import web

from ._admin import _json_answer
from ._callback_log import CallbackEvent
from ._faults import Faults
from ._state import VideoTaskRecord
from ._stats import SandboxStats

__all__ = ["DASHBOARD_PATH", "MAX_TASKS_SHOWN", "dashboard_routes"]

DASHBOARD_PATH = "/sandbox/ui"
#: The newest tasks the page shows: enough to watch a bot, few enough to redraw each second.
MAX_TASKS_SHOWN = 100

#: Static files of the page, by the name they are served under (``/sandbox/ui/<name>``).
_ASSETS = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
#: The page runs only its own script and style, talks only to this sandbox, plays only its
#: videos, and may not be framed (a framing page could click its fault toggles).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: The counters the page shows (the per-task and per-track ones grow with every task).
_STATS = (
    "submits_accepted",
    "callbacks_sent",
    "callbacks_failed",
    "callbacks_dropped",
    "callbacks_duplicated",
    "callbacks_early",
    "callback_attempts",
)


class Watched(Protocol):
    """What the dashboard shows and switches: the :class:`Sandbox` (a protocol, so this
    module needs nothing of the server's)."""

    faults: Faults
    stats: SandboxStats
    maintenance: bool
    credits: int

    def now(self) -> float: ...

    @property
    def tasks(self) -> Mapping[str, VideoTaskRecord]: ...

    def callback_events(self, video_task_id: str) -> tuple[CallbackEvent, ...]: ...


def dashboard_routes(sandbox: Watched, token: str) -> list[web.RouteDef]:
    """The page and its files (open to all: they hold no data) and its state (only with
    ``token``)."""
    folder = resources.files(__package__) / "dashboard"
    page = (folder / "index.html").read_bytes()
    assets = {name: (folder / name).read_bytes() for name in _ASSETS}

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_HEADERS)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound()
        return web.Response(
            body=assets[name], content_type=_ASSETS[name], charset="utf-8", headers=_HEADERS
        )

    async def state(request: web.Request) -> object:
        return snapshot(sandbox)

    return [
        web.get(DASHBOARD_PATH, index),
        web.get(DASHBOARD_PATH + "/state", _json_answer(state, token.encode())),
        web.get(DASHBOARD_PATH + "/{name}", asset),
    ]


def snapshot(sandbox: Watched) -> dict[str, object]:
    """Everything the page shows, newest task first."""
    newest = heapq.nlargest(MAX_TASKS_SHOWN, sandbox.tasks.values(), key=lambda t: t.created_at)
    stats = sandbox.stats
    return {
        "now": sandbox.now(),
        "credits": sandbox.credits,
        "maintenance": sandbox.maintenance,
        "faults": sandbox.faults.as_dict(),
        "stats": {
            **{name: getattr(stats, name) for name in _STATS},
            "requests": dict(stats.requests),
            "answers": {str(code): n for code, n in sorted(stats.answers.items())},
        },
        "total_tasks": len(sandbox.tasks),
        "tasks": [_task(record, sandbox.callback_events(record.task_id)) for record in newest],
    }


def _task(record: VideoTaskRecord, callbacks: tuple[CallbackEvent, ...]) -> dict[str, object]:
    path = None if record.expired else record.video_path
    return {
        "task_id": record.task_id,
        "status": record.status.value,
        "created_at": record.created_at,
        "completed_at": record.completed_at,
        "author": record.author,
        "domain_name": record.domain_name,
        "music_task_id": record.music_task_id,
        "audio_id": record.audio_id,
        "music_index": record.music_index,
        "callback_url": record.callback_url,
        # A path on this server, so the page plays it under its own origin (and CSP).
        "video": None if path is None else f"/videos/{path.name}",
        "expired": record.expired,
        "error_message": record.error_message,
        "callbacks": [event.as_json() for event in callbacks],
    }
