"""The API's JSON shapes, written by hand: the sandbox is an independent fake of the real
server and must not borrow the SDK's converter (a shared bug would then go unnoticed)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from ._dialects import Meaning
from ._state import Flag, VideoTaskRecord

__all__ = [
    "MAX_BRANDING",
    "TimeFormat",
    "callback_body",
    "envelope",
    "format_time",
    "hide_host_paths",
    "record_info",
    "validate_generate",
]

TimeFormat = Literal["ms", "string"]

#: author and domainName: "Maximum 50 characters" (seed).
MAX_BRANDING = 50
#: The longest callBackUrl kept (every task keeps its own, and record-info echoes it).
MAX_CALLBACK_URL = 4096
#: The longest task id the sandbox counts polls of (its own are far shorter).
MAX_TASK_ID = 256


def envelope(code: int, msg: str, data: object = None) -> dict[str, object]:
    return {"code": code, "msg": msg, "data": data}


def format_time(at: float | None, time_format: TimeFormat) -> int | str | None:
    """Epoch milliseconds, or the "YYYY-MM-DD HH:MM:SS" (UTC) strings another provider
    documents."""
    if at is None:
        return None
    if time_format == "ms":
        return round(at * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def record_info(record: VideoTaskRecord, time_format: TimeFormat) -> dict[str, object]:
    """The ``data`` of Get Music Video Details."""
    return {
        "taskId": record.task_id,
        # The source track, as upstream describes it (an audio id, not the music task).
        "musicId": record.audio_id,
        "audioId": record.audio_id,
        "callbackUrl": record.callback_url,
        "musicIndex": record.music_index,
        "completeTime": format_time(record.completed_at, time_format),
        "response": None if record.video_url is None else {"videoUrl": record.video_url},
        "successFlag": record.status.value,
        "createTime": format_time(record.created_at, time_format),
        "errorCode": record.error_code,
        "errorMessage": record.error_message,
    }


#: An absolute (or home-relative) path, POSIX or Windows, not part of a URL or a word.
_HOST_PATH = re.compile(r"(?<![\w.:/\\~-])~?(?:/|[A-Za-z]:\\)[^\s'\"<>|]+")


def hide_host_paths(text: str, known: Mapping[str, str] | None = None) -> str:
    """``text`` (an error message bound for an answer or a callback) without host paths:
    each ``known`` path becomes what it maps to, then whatever else looks like an absolute
    path is cut down to its last part."""
    for path, shown in sorted((known or {}).items(), key=lambda item: -len(item[0])):
        if path:
            text = text.replace(path, shown)
    return _HOST_PATH.sub(lambda m: _last_part(m.group()), text)


def _last_part(path: str) -> str:
    parts = [part for part in re.split(r"[/\\]", path) if part]
    return parts[-1] if parts else "?"


def callback_body(record: VideoTaskRecord) -> dict[str, object]:
    """What is POSTed to callBackUrl (note the snake_case keys, unlike the rest)."""
    data = {"task_id": record.task_id, "video_url": record.video_url}
    if record.status is Flag.GENERATE_MP4_FAILED:
        msg = f"Build Failed - Audio mp4 generation failed: {record.error_message}"
        return envelope(500, msg, data)
    return envelope(200, "MP4 generated successfully.", data)


def validate_generate(body: dict[str, object]) -> tuple[Meaning, str] | None:
    """The first reason the Create Music Video body fails validation (what it means, and
    why), or None."""
    invalid = Meaning.INVALID_PARAMS
    for name in ("taskId", "audioId", "callBackUrl"):
        value = body.get(name)
        if value is None:
            return invalid, f"{name} is required"
        if not isinstance(value, str) or not value.strip():
            return invalid, f"{name} must be a non-empty string"
    if len(str(body["callBackUrl"])) > MAX_CALLBACK_URL:
        return invalid, f"callBackUrl is at most {MAX_CALLBACK_URL} characters"
    try:
        url = urlsplit(str(body["callBackUrl"]))
        absolute = url.scheme in ("http", "https") and bool(url.hostname)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        absolute = False
    if not absolute:
        return invalid, "callBackUrl must be an absolute http or https URL"
    for name in ("author", "domainName"):
        if name not in body:
            continue
        value = body[name]
        # null is no string either: the contract types them as strings, to be left out
        # when not wanted (a client sending null may be refused upstream too).
        if not isinstance(value, str):
            return invalid, f"{name} must be a string (leave it out for none)"
        if len(value) > MAX_BRANDING:
            return (
                Meaning.TOO_LONG,
                f"{name} is at most {MAX_BRANDING} characters, got {len(value)}",
            )
    return None
