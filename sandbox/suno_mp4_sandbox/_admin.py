"""Admin routes under ``/sandbox/``: the test controls of ``Sandbox`` over HTTP, for a
sandbox running in another process (``python -m suno_mp4_sandbox``, the benchmarks).

The sandbox listens on loopback and holds nothing of value, but any web page the developer
visits, and any other program on the machine, can send requests to loopback. So:

- every admin request carries the sandbox's admin token in the ``X-Sandbox-Token`` header
  (``admin_headers(token)`` builds it; a random one per sandbox unless given, printed at
  start): without it the answer is 401, before the body is read;
- a POST must say ``Content-Type: application/json`` (415 otherwise), which a cross-site
  page cannot send without a CORS preflight, and the sandbox answers no preflight;
- bodies go through the bounded reader of ``_jsonbody`` (size, nesting, finite numbers);
- every field is checked for its type and range, counts are capped, and a bad request
  answers a 4xx with a JSON ``{"error": ...}``, never a 5xx;
- an audio ``path`` that cannot be used answers one and the same 400 whatever the reason,
  so the route tells no one which files exist on the host.
"""

from __future__ import annotations

import hmac
import math
import os
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
from aiohttp import web

from ._faults import Faults
from ._jsonbody import BodyError, read_json
from ._probe import ProbeError, probe
from ._state import VideoTaskRecord
from ._stats import SandboxStats


class Controls(Protocol):
    """What the admin routes drive: the :class:`Sandbox`'s test controls (a protocol, so
    this module needs nothing of the server's)."""

    faults: Faults
    stats: SandboxStats
    maintenance: bool
    credits: int

    def add_track(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        duration: float | None = None,
        fail: str | None = None,
    ) -> tuple[str, str]: ...

    def add_music_task(self, tracks: int = 2) -> tuple[str, list[str]]: ...

    def now(self) -> float: ...

    def advance(self, *, days: float = 0, hours: float = 0, seconds: float = 0) -> None: ...

    def task(self, video_task_id: str) -> VideoTaskRecord: ...

    @property
    def tasks(self) -> Mapping[str, VideoTaskRecord]: ...


__all__ = [
    "ADMIN_TOKEN_HEADER",
    "MAX_ADVANCE_DAYS",
    "MAX_CREDITS",
    "MAX_DURATION",
    "MAX_TEXT",
    "MAX_TRACKS",
    "UNUSABLE_AUDIO",
    "admin_headers",
    "admin_routes",
]

#: The header every admin request carries its sandbox's admin token in. A custom header
#: also makes a cross-site request need a CORS preflight, which the sandbox never answers.
ADMIN_TOKEN_HEADER = "X-Sandbox-Token"

#: Tracks of one music task made by ``/sandbox/music-tasks`` (the API makes 2).
MAX_TRACKS = 10
#: Seconds of a synthetic track.
MAX_DURATION = 3600.0
#: Characters of a title or a failure reason.
MAX_TEXT = 200
#: Longest single move of the clock (the clock itself stops before the year 10000).
MAX_ADVANCE_DAYS = 36_500.0
MAX_CREDITS = 10**15
#: The answer to every audio path that cannot be used, whatever the reason.
UNUSABLE_AUDIO = "cannot use that audio file"
#: Longest path accepted, in characters (PATH_MAX on Linux).
_MAX_PATH = 4096

AdminHandler = Callable[[web.Request], Awaitable[object]]


def admin_headers(token: str) -> dict[str, str]:
    """The headers an admin request needs: ``{"X-Sandbox-Token": token}``."""
    return {ADMIN_TOKEN_HEADER: token}


class AdminError(Exception):
    """A bad admin request: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def admin_routes(sandbox: Controls, token: str) -> list[web.RouteDef]:
    """The admin routes of ``sandbox``, open to requests that carry ``token``."""
    if not token:
        raise ValueError("the admin token must not be empty")
    expected = token.encode()

    def _json(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        return _json_answer(handler, expected)

    async def add_track(request: web.Request) -> object:
        body = await _body(request)
        title = _text(body, "title")
        fail = _text(body, "fail")
        duration = _duration(body)
        path = body.get("path")
        if path is None:
            task_id, audio_id = sandbox.add_track(title=title, duration=duration, fail=fail)
            return {"task_id": task_id, "audio_id": audio_id}
        if not isinstance(path, str) or len(path) > _MAX_PATH:
            raise AdminError(UNUSABLE_AUDIO)
        usable = await anyio.to_thread.run_sync(_usable_audio, path)
        if usable is None:
            raise AdminError(UNUSABLE_AUDIO)
        audio, length = usable
        try:
            task_id, audio_id = sandbox.add_track(
                audio, title=title, duration=duration or length, fail=fail
            )
        except (OSError, ValueError):  # gone since it was checked
            raise AdminError(UNUSABLE_AUDIO) from None
        return {"task_id": task_id, "audio_id": audio_id}

    async def add_music_task(request: web.Request) -> object:
        tracks = _integer(await _body(request), "tracks", default=2, low=1, high=MAX_TRACKS)
        task_id, audio_ids = sandbox.add_music_task(tracks)
        return {"task_id": task_id, "audio_ids": audio_ids}

    async def stats(request: web.Request) -> object:
        return sandbox.stats.as_json()

    async def reset_stats(request: web.Request) -> object:
        sandbox.stats.reset()
        return sandbox.stats.as_json()

    async def advance(request: web.Request) -> object:
        body = await _body(request)
        sandbox.advance(
            days=_number(body, "days", high=MAX_ADVANCE_DAYS),
            hours=_number(body, "hours", high=MAX_ADVANCE_DAYS * 24),
            seconds=_number(body, "seconds", high=MAX_ADVANCE_DAYS * 86400),
        )
        return {"now": sandbox.now()}

    async def faults(request: web.Request) -> object:
        if request.method == "POST":
            sandbox.faults.update(await _body(request))
        return sandbox.faults.as_dict()

    async def maintenance(request: web.Request) -> object:
        on = (await _body(request)).get("on", True)
        if not isinstance(on, bool):
            raise AdminError("on must be true or false")
        sandbox.maintenance = on
        return {"maintenance": sandbox.maintenance}

    async def credits(request: web.Request) -> object:
        if request.method == "POST":
            body = await _body(request)
            if "credits" not in body:
                raise AdminError("credits is required")
            sandbox.credits = _integer(body, "credits", default=0, low=0, high=MAX_CREDITS)
        return {"credits": sandbox.credits}

    async def task(request: web.Request) -> object:
        task_id = request.match_info["task_id"]
        if task_id not in sandbox.tasks:
            raise AdminError("no such video task", status=404)
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


def _json_answer(
    handler: AdminHandler, token: bytes
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Answer the handler's result as JSON; a bad admin request answers 4xx with why."""

    async def wrapped(request: web.Request) -> web.Response:
        # aiohttp keeps bytes that are no UTF-8 as surrogates: encode them back as they came.
        given = request.headers.get(ADMIN_TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, token):
            return _error(401, f"admin requests need the sandbox's {ADMIN_TOKEN_HEADER} header")
        if request.method == "POST" and request.content_type != "application/json":
            return _error(415, "admin POSTs take Content-Type: application/json")
        try:
            return web.json_response(await handler(request))
        except (AdminError, BodyError) as exc:
            return _error(exc.status, exc.message)
        except (ValueError, TypeError, KeyError) as exc:  # the setting refused the value
            return _error(400, f"{type(exc).__name__}: {exc}")
        except OSError:  # its message may name a host path
            return _error(400, "the sandbox could not do that")

    return wrapped


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


# Fields


def _number(body: dict[str, Any], name: str, *, high: float) -> float:
    """A number from 0 to ``high`` (0 when absent). Comparing before converting keeps a
    huge integer from overflowing a float."""
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise AdminError(f"{name} must be a number from 0 to {high:g}")
    return float(value)


def _integer(body: dict[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AdminError(f"{name} must be a whole number from {low} to {high}")
    return value


def _duration(body: dict[str, Any]) -> float | None:
    value = body.get("duration")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdminError("duration must be a number of seconds")
    if not 0 < value <= MAX_DURATION:
        raise AdminError(f"duration must be more than 0 and at most {MAX_DURATION:g} seconds")
    return float(value)


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise AdminError(f"{name} must be a string of at most {MAX_TEXT} characters")
    return value


# Audio files


#: How the audio formats ffmpeg reads start: checked before ffmpeg sees the file, so a
#: playlist or any other file that makes ffmpeg open further files or URLs never reaches it.
_AUDIO_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"ID3"),  # MP3 with an ID3v2 tag
    (0, b"fLaC"),
    (0, b"OggS"),  # Ogg Vorbis, Opus, FLAC
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM audio
    (4, b"ftyp"),  # MP4 / M4A / AAC in MP4
    (0, b"caff"),
)


def _looks_like_audio(head: bytes) -> bool:
    if any(head[at : at + len(magic)] == magic for at, magic in _AUDIO_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    # An MPEG audio frame (MP3 without a tag) or an ADTS AAC frame: 11 sync bits.
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def _usable_audio(text: str) -> tuple[Path, float | None] | None:
    """The resolved audio file and its length (None when ffmpeg is not installed to
    measure it), or None when the file cannot be used, for whatever reason: missing, not
    a regular file, unreadable, not audio. Blocking: run it in a worker thread."""
    try:
        audio = Path(text).resolve()
        if not text or not audio.is_file():
            return None
        with audio.open("rb") as fh:
            head = fh.read(16)
        if not _looks_like_audio(head):
            return None
        try:
            info = probe(audio)
        except ImportError:  # no ffmpeg: the header is all there is to go by
            return audio, None
    except (OSError, ValueError, RuntimeError, ProbeError, subprocess.SubprocessError):
        return None
    if info.audio_codec is None or not 0 < info.duration < math.inf:
        return None
    return audio, info.duration
